"""Test kit for cxhub and third-party connectors: a fake clock, throwaway databases, and the
conformance suites every connector runs (subclass one and set a few attributes).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

PG_ADMIN_URL = os.environ.get("CXHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_ADMIN_URL = os.environ.get("CXHUB_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


class FakeClock:
    """A clock tests move by hand: ``clock()`` returns now, ``clock.advance(seconds=...)`` moves it."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 11, 2, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


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


class ConnectorConformance:
    """Shared checks for every connector. Subclass (``class TestMine(ConnectorConformance)``) and set
    ``connector_kind`` and ``options`` (a dict that validates)."""

    connector_kind: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def test_registered_by_entry_point(self) -> None:
        from hub.registry import discover

        info = discover().get(self.connector_kind)
        assert info is not None, f"{self.connector_kind} is not in the cxhub.connectors entry points"
        assert info.cls is not None, info.error
        assert info.status == "ok", info.status

    def test_identity_declared(self) -> None:
        from hub.registry import get

        cls = get(self.connector_kind)
        assert cls.kind == self.connector_kind
        assert cls.title, "a one-line title shows in `cxhub connectors`"
        assert cls.roles(), "a connector is a push source, a pull source or a destination"
        assert cls.__doc__, "connector classes need a docstring"

    def test_options_validate_and_reject_unknown_keys(self) -> None:
        import pytest
        from pydantic import ValidationError

        from hub.registry import get

        cls = get(self.connector_kind)
        cls.Options.model_validate(self.options)
        with pytest.raises(ValidationError):
            cls.Options.model_validate({**self.options, "no_such_option_xyz": 1})

    def test_secrets_never_in_repr(self) -> None:
        from pydantic import SecretStr

        from hub.registry import get

        cls = get(self.connector_kind)
        opts = cls.Options.model_validate(self.options)
        text = repr(opts) + str(opts)
        for name in type(opts).model_fields:
            value = getattr(opts, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                assert value.get_secret_value() not in text, f"secret option {name} shows in repr"
