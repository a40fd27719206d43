"""Throwaway PostgreSQL and MariaDB databases for cxhub's own tests and benchmarks.

These belong to cxhub's test infrastructure (they need the services of README 'Services'), not to
the connector SDK: a connector's tests fake their platform with ``httpx.MockTransport`` or respx
and never need a database of the hub's.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN_URL = os.environ.get("CXHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_ADMIN_URL = os.environ.get("CXHUB_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


def _unavailable(what: str, exc: Exception) -> None:
    import pytest

    msg = f"{what} unreachable ({type(exc).__name__}: {exc}); start it (see README 'Services')"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {msg}")
    pytest.skip(f"SKIPPED LOUDLY: {msg}")


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test session; dropped afterwards. Yields its URL."""
    from sqlalchemy import create_engine, text

    name = f"cxhub_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def temporary_mariadb_database() -> Iterator[str]:
    """A fresh MariaDB database; dropped afterwards. Yields its SQLAlchemy URL."""
    from sqlalchemy import create_engine, text

    name = f"cxhub_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(MARIADB_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except Exception as exc:
        admin.dispose()
        _unavailable("MariaDB at 127.0.0.1:3306", exc)
    base = MARIADB_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}?charset=utf8mb4"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


__all__ = ["MARIADB_ADMIN_URL", "PG_ADMIN_URL", "temporary_mariadb_database", "temporary_postgres_database"]
