"""Messages into the outbox: their stored JSON form, and ``enqueue`` (called in the cause's transaction)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

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
