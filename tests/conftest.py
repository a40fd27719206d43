"""Shared fixtures: stores on SQLite and on the real PostgreSQL (a throwaway database per session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.databases import temporary_mariadb_database, temporary_postgres_database
from kit.destinations import fake, make_destination, rsa_keys  # noqa: F401  (fixtures for every folder)
from kit.runtime import make_runtime  # noqa: F401

from hub.sdk.testing import FakeClock
from hub.store import Store

SECRET = b"test-secret-key"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (fails under CI=true if unreachable)."""
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    with temporary_mariadb_database() as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _reset(store: Store) -> None:
    from hub.store.schema import metadata

    with store.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'cxhub.db'}", clock=clock)
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def _pg_store_migrated(pg_url: str) -> Iterator[str]:
    store = Store(pg_url)
    store.migrate()
    store.dispose()
    yield pg_url


@pytest.fixture
def pg_store(_pg_store_migrated: str, clock: FakeClock) -> Iterator[Store]:
    store = Store(_pg_store_migrated, clock=clock)
    _reset(store)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test on SQLite and on the real PostgreSQL."""
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    return request.getfixturevalue(name)


@pytest.fixture
def deferred_copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Row counts of every touchpoints COPY that ingest sent without waiting (``copy_deferred``)."""
    import hub.ingest

    sent: list[int] = []
    real = hub.ingest.copy_deferred

    def spy(conn, table, rows, columns):  # type: ignore[no-untyped-def]
        sent.append(len(rows))
        return real(conn, table, rows, columns)

    monkeypatch.setattr(hub.ingest, "copy_deferred", spy)
    return sent
