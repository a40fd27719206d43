"""Messages into the outbox: their stored JSON form, and ``enqueue`` (called in the cause's transaction)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from hub.sdk.connector import Button, OutboundMessage
from hub.store import bulk_insert_ignore, insert_ignore
from hub.store.schema import outbox

STATUSES = ("pending", "sending", "sent", "failed", "dead")


def message_to_dict(message: OutboundMessage) -> dict[str, Any]:
    """The JSON form of a message stored in ``outbox.message``: ``dataclasses.asdict`` without its
    recursive deep copy (the row is serialised at once; buttons hold only strings), a fraction of
    the cost when a batch enqueues thousands."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, list):
            value = [
                {g.name: getattr(v, g.name) for g in dataclasses.fields(v)}
                if dataclasses.is_dataclass(v) and not isinstance(v, type)
                else v
                for v in value
            ]
        out[f.name] = value
    return out


def message_from_dict(data: dict[str, Any]) -> OutboundMessage:
    """The message back from its stored JSON form."""
    data = dict(data)
    data["buttons"] = [Button(**b) for b in data.get("buttons", [])]
    return OutboundMessage(**data)


def pending_row(
    *,
    destination: str,
    message: OutboundMessage,
    now: datetime,
    cause: str | None = None,
    not_before: datetime | None = None,
) -> dict[str, Any]:
    """The outbox row of a message waiting to be sent (what :func:`enqueue` writes)."""
    return {
        "key": message.key,
        "destination": destination,
        "status": "pending",
        "message": message_to_dict(message),
        "cause": cause,
        "attempts": 0,
        "next_attempt_at": not_before or now,
        "created_at": now,
        "updated_at": now,
    }


def enqueue_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add many :func:`pending_row` rows at once, skipping keys already there (a batch's invitations)."""
    if rows:
        bulk_insert_ignore(conn, outbox, rows, ["key"])


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
        stmt, pending_row(destination=destination, message=message, now=now, cause=cause, not_before=not_before)
    ).first()
    return row is not None
