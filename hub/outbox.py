"""The durable outbox: every message cxhub sends is a row written in the transaction of its cause.

``enqueue`` is called inside that transaction (an ingest hook, a case transition); the key is the
idempotency key derived from the cause, so a replay never enqueues the same message twice.

Row life cycle (the workers in :mod:`hub.features.delivery` move rows along it)::

    pending --claim--> sending --ok--> sent
       ^                  |---retriable--> failed --(next_attempt_at)--> claimed again
       |                  |---permanent / attempts exhausted--> dead
       +---- cxhub outbox retry (failed / dead) ----+

A ``sending`` row whose worker died is claimed again once its lease (``locked_until``) expires.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from hub.sdk.connector import Button, OutboundMessage
from hub.store import insert_ignore
from hub.store.schema import outbox

STATUSES = ("pending", "sending", "sent", "failed", "dead")


def message_to_dict(message: OutboundMessage) -> dict[str, Any]:
    """The JSON form of a message stored in ``outbox.message``."""
    return dataclasses.asdict(message)


def message_from_dict(data: dict[str, Any]) -> OutboundMessage:
    """The message back from its stored JSON form."""
    data = dict(data)
    data["buttons"] = [Button(**b) for b in data.get("buttons", [])]
    return OutboundMessage(**data)


def enqueue(
    conn: Connection,
    *,
    destination: str,
    message: OutboundMessage,
    now: datetime,
    cause: str | None = None,
    not_before: datetime | None = None,
) -> bool:
    """Add ``message`` for ``destination`` unless its key is already there. True when added."""
    stmt = insert_ignore(conn, outbox, ["key"]).returning(outbox.c.id)
    row = conn.execute(
        stmt,
        {
            "key": message.key,
            "destination": destination,
            "status": "pending",
            "message": message_to_dict(message),
            "cause": cause,
            "attempts": 0,
            "next_attempt_at": not_before or now,
            "created_at": now,
            "updated_at": now,
        },
    ).first()
    return row is not None


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
    from sqlalchemy import func

    rows = conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
    return {status: int(n) for status, n in rows}


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
    from sqlalchemy import or_

    stmt = (
        update(outbox)
        .where(or_(*cond), outbox.c.status.in_(("failed", "dead", "pending")))
        .values(status="pending", attempts=0, next_attempt_at=now, locked_by=None, locked_until=None, updated_at=now)
    )
    return int(conn.execute(stmt).rowcount or 0)
