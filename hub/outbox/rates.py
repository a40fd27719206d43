"""The rate budgets' rows, shared by every process: bucket locks, the send log, platform blocks.

A bucket's row in ``delivery_buckets`` is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
transactions are already serialised) while a process counts and reserves, so two processes never
both take the last slot. Each reservation is a row in ``delivery_sends``. What a budget allows is
decided by :mod:`hub.features.delivery.budgets`; these functions only read and write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from hub.outbox.tables import delivery_buckets, delivery_sends
from hub.store import insert_ignore


def lock(conn: Connection, bucket: str, now: datetime) -> datetime | None:
    """Lock ``bucket``'s row for this transaction (creating it); returns its ``blocked_until``."""
    conn.execute(insert_ignore(conn, delivery_buckets, ["bucket"]), {"bucket": bucket, "updated_at": now})
    row = conn.execute(
        select(delivery_buckets.c.blocked_until).where(delivery_buckets.c.bucket == bucket).with_for_update()
    ).first()
    return row.blocked_until if row else None


def blocked_until(conn: Connection, bucket: str) -> datetime | None:
    """``bucket``'s stored ``blocked_until`` (without locking), None when it has no row or none."""
    row = conn.execute(select(delivery_buckets.c.blocked_until).where(delivery_buckets.c.bucket == bucket)).first()
    return row.blocked_until if row is not None else None


def window(conn: Connection, bucket: str, since: datetime) -> list[datetime]:
    """When ``bucket``'s reservations after ``since`` were made, oldest first; older ones are
    deleted (they left every window: keeps the log short)."""
    conn.execute(delete(delivery_sends).where(delivery_sends.c.bucket == bucket, delivery_sends.c.at <= since))
    return [
        r.at
        for r in conn.execute(
            select(delivery_sends.c.at)
            .where(delivery_sends.c.bucket == bucket, delivery_sends.c.at > since)
            .order_by(delivery_sends.c.at)
        )
    ]


def reserve(conn: Connection, buckets: Sequence[str], count: int, now: datetime) -> None:
    """Log ``count`` sends at ``now`` in each of ``buckets``."""
    rows = [{"bucket": b, "at": now} for b in buckets for _ in range(count)]
    if rows:
        conn.execute(insert(delivery_sends), rows)


def block(conn: Connection, bucket: str, until: datetime, reason: str, now: datetime) -> None:
    """Store that ``bucket`` is blocked until ``until`` (every process sees it)."""
    conn.execute(insert_ignore(conn, delivery_buckets, ["bucket"]), {"bucket": bucket, "updated_at": now})
    conn.execute(
        update(delivery_buckets)
        .where(delivery_buckets.c.bucket == bucket)
        .values(blocked_until=until, reason=reason[:255], updated_at=now)
    )


def count_since(conn: Connection, bucket: str, since: datetime) -> int:
    """How many reservations ``bucket`` holds after ``since``."""
    q = select(func.count()).where(delivery_sends.c.bucket == bucket, delivery_sends.c.at > since)
    return int(conn.execute(q).scalar() or 0)
