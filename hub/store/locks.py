"""Per-customer advisory locks: features that count what a customer was sent (caps, recovery
invitations) serialise their decisions about one customer across processes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import Connection, text

from hub.store.engine import dumps


def lock_key(customer_id: str) -> int:
    """The PostgreSQL advisory lock key (signed 64 bits) that serialises one customer's caps."""
    digest = hashlib.sha256(f"cxhub-survey-customer\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_customers(conn: Connection, customer_ids: Iterable[str]) -> int:
    """Take the transaction-scoped advisory locks of these customers on PostgreSQL, in ascending key
    order (every process locks in the same order, so two batches cannot deadlock on them); they are
    released at commit / rollback. SQLite has one writer at a time already. Returns how many."""
    if conn.dialect.name != "postgresql":
        return 0
    keys = sorted({lock_key(c) for c in customer_ids})
    if keys:
        # with ORDER BY, PostgreSQL calls the volatile lock function row by row after sorting
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(k) FROM "
                "(SELECT CAST(json_array_elements_text(CAST(:keys AS json)) AS bigint) AS k) AS t ORDER BY k"
            ),
            {"keys": dumps(keys)},
        ).all()
    return len(keys)
