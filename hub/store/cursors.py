"""The committed cursor of each pull source (``source_state``): written in the same transaction as
the batch it follows, so a crash re-reads at most one batch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from hub.store.engine import Store, upsert
from hub.store.schema import source_state


def load_state(store: Store, source: str) -> dict[str, Any] | None:
    """The committed cursor state of ``source``."""
    with store.engine.connect() as conn:
        row = conn.execute(select(source_state.c.state).where(source_state.c.source == source)).first()
    return None if row is None else dict(row[0])


def save_state(conn: Connection, source: str, state: dict[str, Any], now: datetime) -> None:
    """Write ``state`` inside the caller's transaction."""
    upsert(conn, source_state, ["source"], {"source": source, "state": state, "updated_at": now})


def reset_state(store: Store, source: str) -> None:
    """Forget a source's cursor (full resync)."""
    with store.begin() as conn:
        conn.execute(source_state.delete().where(source_state.c.source == source))
