"""Messages into the outbox: their stored JSON form, and ``enqueue`` (called in the cause's transaction).

A message's recipients (``to``: phone numbers, email addresses, openids...) are personal data. They
are stored sealed (AES-256-GCM with a key derived from the secret key, :class:`hub.privacy.Sealer`)
on every store the runtime binds a key to (:func:`seal_recipients`), and opened again when the
message is read back to be sent (:func:`message_from_dict`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import weakref
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from hub.privacy import Sealer, is_sealed, unseal
from hub.sdk.connector import Button, OutboundMessage
from hub.store import bulk_insert_ignore, insert_ignore
from hub.store.schema import outbox

STATUSES = ("pending", "sending", "sent", "failed", "dead")

#: the sealer of each store's engine (bound by the runtime with the config's secret key)
_SEALERS: weakref.WeakKeyDictionary[Engine, Sealer] = weakref.WeakKeyDictionary()


def seal_recipients(engine: Engine, secret_key: bytes) -> None:
    """Store the recipients of messages enqueued on ``engine`` sealed with ``secret_key`` (the
    runtime calls it for its store; a bare store, as in some tests, stores them as given)."""
    _SEALERS[engine] = Sealer(secret_key)


def _seal(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sealer = _SEALERS.get(conn.engine)
    if sealer is None:
        return rows
    out = []
    for row in rows:
        msg = row["message"]
        to = msg.get("to")
        if to and not is_sealed(to):
            row = {**row, "message": {**msg, "to": sealer.seal(json.dumps(to, ensure_ascii=False))}}
        out.append(row)
    return out


def recipient_tag(conn: Connection, recipient: str) -> str:
    """What may be stored in place of a recipient (a per-recipient rate bucket's name): a keyed
    digest when the store's engine has a sealer, a plain SHA-256 otherwise (a bare test store)."""
    sealer = _SEALERS.get(conn.engine)
    if sealer is not None:
        return sealer.tag(recipient)
    return hashlib.sha256(recipient.encode()).hexdigest()[:24]


def recipients(to: Any) -> list[str]:
    """A stored message's ``to`` as the list of recipients (opened when sealed)."""
    if is_sealed(to):
        return list(json.loads(unseal(to)))
    return list(to or [])


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
    if "to" in data:
        data["to"] = recipients(data["to"])
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
        bulk_insert_ignore(conn, outbox, _seal(conn, rows), ["key"])


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
    pending = pending_row(destination=destination, message=message, now=now, cause=cause, not_before=not_before)
    row = conn.execute(stmt, _seal(conn, [pending])[0]).first()
    return row is not None
