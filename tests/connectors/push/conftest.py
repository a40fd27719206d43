"""Fixtures: a hub with one source per push connector behind FastAPI's TestClient, on SQLite or the
real PostgreSQL, with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.push import Hub, RsaPair, make_hub, new_rsa_pair

from hub.sdk.testing import FakeClock
from hub.store.schema import metadata


@pytest.fixture(scope="session")
def alipay_keys() -> RsaPair:
    return new_rsa_pair()


@pytest.fixture
def sqlite_hub(tmp_path: Path, alipay_keys: RsaPair, clock: FakeClock) -> Iterator[Hub]:
    with make_hub(f"sqlite:///{tmp_path / 'push.db'}", alipay_keys, clock) as hub:
        yield hub


@pytest.fixture(scope="session")
def _pg_push_url(pg_url: str) -> str:
    return pg_url


@pytest.fixture
def pg_hub(_pg_push_url: str, alipay_keys: RsaPair, clock: FakeClock) -> Iterator[Hub]:
    with make_hub(_pg_push_url, alipay_keys, clock) as hub:
        with hub.rt.store.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        yield hub


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest) -> Hub:
    """The same test on SQLite and on the real PostgreSQL."""
    return request.getfixturevalue("sqlite_hub" if request.param == "sqlite" else "pg_hub")
