"""The durable outbox: every message cxhub sends is a row written in the transaction of its cause.

``enqueue`` is called inside that transaction (an ingest hook, a case transition); the key is the
idempotency key derived from the cause, so a replay never enqueues the same message twice.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from hub.connector import Button, OutboundMessage
from hub.store import insert_ignore
from hub.store.schema import outbox


def message_to_dict(message: OutboundMessage) -> dict[str, Any]:
    return dataclasses.asdict(message)


def message_from_dict(data: dict[str, Any]) -> OutboundMessage:
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
