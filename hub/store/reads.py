"""What people read from the store: recent touchpoints and quarantined records (CLI, web)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from hub.store.schema import quarantine, touchpoints


def recent_touchpoints(
    conn: Connection, *, source: str | None = None, kind: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Stored touchpoints (their documents), newest first."""
    q = select(touchpoints.c.doc).order_by(touchpoints.c.occurred_at.desc()).limit(limit)
    if source:
        q = q.where(touchpoints.c.source == source)
    if kind:
        q = q.where(touchpoints.c.kind == kind)
    return [r[0] for r in conn.execute(q)]


def quarantined(
    conn: Connection, *, source: str | None = None, include_replayed: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """Quarantined records with their reason, oldest first (open ones only unless ``include_replayed``)."""
    q = select(quarantine).order_by(quarantine.c.id).limit(limit)
    if not include_replayed:
        q = q.where(quarantine.c.status == "open")
    if source:
        q = q.where(quarantine.c.source == source)
    return [dict(r) for r in conn.execute(q).mappings()]
