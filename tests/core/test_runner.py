"""``cxhub run`` pieces: leader election for leader-only jobs, and the shared TLS context."""

from __future__ import annotations

import time
from types import SimpleNamespace

from hub.runner import Leadership
from hub.sdk.connector import ConnectorContext, shared_ssl_context
from hub.store import Store


def test_one_leader_among_processes_and_takeover(pg_store: Store) -> None:
    a = Leadership(SimpleNamespace(store=pg_store))  # type: ignore[arg-type]
    b = Leadership(SimpleNamespace(store=Store(pg_store.url)))  # type: ignore[arg-type]
    try:
        assert a.is_leader() is True
        assert b.is_leader() is False
        assert a.is_leader() is True  # keeps it while its session lives
        a.close()  # the leader's process dies: its session and lock go with it
        # PostgreSQL ends the dead session's backend (and frees its lock) a moment after the client
        # hangs up; the scheduler asks again on every tick, so the test asks for a few seconds too
        deadline = time.monotonic() + 5
        while not b.is_leader() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.is_leader() is True
        assert a.is_leader() is False
    finally:
        a.close()
        b.close()


def test_sqlite_is_always_the_leader(sqlite_store: Store) -> None:
    assert Leadership(SimpleNamespace(store=sqlite_store)).is_leader() is True  # type: ignore[arg-type]


def test_connector_clients_share_one_tls_context() -> None:
    ctx = ConnectorContext()
    c1, c2 = ctx.http_client("https://a.example"), ctx.http_client("https://b.example")
    try:
        assert shared_ssl_context() is shared_ssl_context()
        assert c1._transport._pool._ssl_context is c2._transport._pool._ssl_context  # type: ignore[attr-defined]
    finally:
        c1.close()
        c2.close()
