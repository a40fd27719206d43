"""Reading the outbox for people and gauges (``cxhub outbox``, the backlog metrics), and
``cxhub outbox retry``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from hub.store.schema import outbox

#: rows that are not final yet: the backlog
OPEN_STATUSES = ("pending", "failed", "sending")


def list_rows(
    conn: Connection,
    *,
    status: str | None = None,
    destination: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Outbox rows, newest first (for ``cxhub outbox``)."""
    q = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if status:
        q = q.where(outbox.c.status == status)
    if destination:
        q = q.where(outbox.c.destination == destination)
    return [dict(r) for r in conn.execute(q).mappings()]


def counts(conn: Connection) -> dict[str, int]:
    """How many rows are in each status."""
    rows = conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
    return {status: int(n) for status, n in rows}


def backlog(conn: Connection) -> list[tuple[str, int, datetime | None]]:
    """``(destination, rows not final, when the oldest of them was created)`` per destination
    that has any: one ``GROUP BY`` over the open rows."""
    q = (
        select(outbox.c.destination, func.count(), func.min(outbox.c.created_at))
        .where(outbox.c.status.in_(OPEN_STATUSES))
        .group_by(outbox.c.destination)
    )
    return [(name, int(n), oldest) for name, n, oldest in conn.execute(q)]


def retry(conn: Connection, *, now: datetime, ids: list[int] | None = None, dead: bool = False) -> int:
    """Make failed / dead rows due again now, with a fresh attempt count. Returns how many.

    ``ids``: these rows (sent and sending rows are left alone: they are not lost). ``dead``: every
    dead row. The idempotency key is unchanged, so a platform that deduplicates still does.
    """
    cond: list[Any] = []
    if ids:
        cond.append(outbox.c.id.in_(ids))
    if dead:
        cond.append(outbox.c.status == "dead")
    if not cond:
        return 0
    stmt = (
        update(outbox)
        .where(or_(*cond), outbox.c.status.in_(("failed", "dead", "pending")))
        .values(status="pending", attempts=0, next_attempt_at=now, locked_by=None, locked_until=None, updated_at=now)
    )
    return int(conn.execute(stmt).rowcount or 0)
