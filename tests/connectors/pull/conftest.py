"""Fixtures of the pull tests: a POS database on SQLite / PostgreSQL / MariaDB, and a Runtime over it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.pull import SECRET, RuntimeFactory, SourceDb
from kit.runtime import build_runtime

from hub.runtime import Runtime


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def source_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SourceDb]:
    """An empty place for a POS schema on each database kind (a fresh schema / tables per test)."""
    if request.param == "sqlite":
        yield SourceDb("sqlite", f"sqlite:///{tmp_path / 'pos.db'}", None)
    elif request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        schema = f"pos_{uuid.uuid4().hex[:8]}"
        yield SourceDb("postgresql", url, schema)
        from kit.pull import engine_for
        from sqlalchemy import text

        eng = engine_for(url)
        with eng.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        eng.dispose()
    else:
        yield SourceDb("mariadb", request.getfixturevalue("mariadb_url"), None)


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[RuntimeFactory]:
    """Build a Runtime from ``sources`` (a dict as in cxhub.yaml) on a SQLite store (or ``store_url``).

    Features (surveys, feedback rules...) are left out: these tests are about the pull path."""
    made: list[Runtime] = []

    def build(sources: dict[str, Any], store_url: str | None = None, **kwargs: Any) -> Runtime:
        cfg = {
            "secret_key": SECRET.decode(),
            "store": {"url": store_url or f"sqlite:///{tmp_path / 'cxhub.db'}"},
            "sources": sources,
        }
        kwargs.setdefault("features", ())
        rt = build_runtime(cfg, path=tmp_path / "cxhub.yaml", **kwargs)
        made.append(rt)
        return rt

    yield build
    for rt in made:
        rt.close()
