"""Replaying the quarantine: re-run open quarantined records through the current mappings once the
mapping (or the data) is fixed. What still fails stays quarantined with its new reason; what now
maps is stored as if it had just arrived, in one transaction.

Quarantined records keep their raw payload (personal data included) for a limited time only:
:func:`purge_quarantine` deletes those older than ``store.quarantine_retention_days`` (the runtime's
hourly ``quarantine-retention`` job)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, select, update

from hub.errors import PayloadError
from hub.ingest import Ingestor, IngestResult
from hub.model import TouchpointEvent
from hub.sdk.connector import RawRecord, Rejected
from hub.store.schema import inbox, quarantine

if TYPE_CHECKING:
    from hub.config import TransportConfig
    from hub.mapping import CompiledMapping
    from hub.store import Store

log = logging.getLogger("cxhub")


def purge_quarantine(store: Store, now: datetime, days: float) -> int:
    """Delete quarantined records (open or replayed) received more than ``days`` before ``now``;
    returns how many. Their payloads hold personal data in plain text: kept for replay, not forever."""
    with store.begin() as conn:
        n = conn.execute(delete(quarantine).where(quarantine.c.created_at < now - timedelta(days=days))).rowcount
    if n:
        log.info("quarantine: deleted %d record(s) older than %g days (store.quarantine_retention_days)", n, days)
    return int(n or 0)


def replay_quarantined(
    ingestor: Ingestor,
    mappings: dict[str, CompiledMapping],
    *,
    ids: Sequence[int] | None = None,
    source: str | None = None,
) -> IngestResult:
    """Re-run open quarantined records through the current mappings (after a fix)."""
    result = IngestResult()
    now = ingestor.clock()
    with ingestor.store.begin() as conn:
        q = select(quarantine).where(quarantine.c.status == "open").order_by(quarantine.c.id)
        if ids:
            q = q.where(quarantine.c.id.in_(list(ids)))
        if source:
            q = q.where(quarantine.c.source == source)
        rows = conn.execute(q).mappings().all()
        events: list[TouchpointEvent] = []
        for row in rows:
            result.read += 1
            mapping = mappings.get(row["source"])
            if mapping is None:
                _requeue(conn, row["id"], f"source {row['source']!r} is not in the config")
                result.quarantined += 1
                continue
            ext = row["external_id"] or f"quarantine-{row['id']}"
            try:
                ev = mapping.apply(row["payload"], source=row["source"], external_id=ext, received_at=now)
            except PayloadError as exc:
                _requeue(conn, row["id"], str(exc))
                result.quarantined += 1
                continue
            done = {"status": "replayed", "replayed_at": now}
            conn.execute(update(quarantine).where(quarantine.c.id == row["id"]).values(**done))
            status = "filtered" if ev is None else "stored"
            tp = None if ev is None else ev.id
            upd = update(inbox).where(inbox.c.source == row["source"], inbox.c.external_id == ext)
            if conn.execute(upd.values(status=status, touchpoint_id=tp)).rowcount == 0:
                conn.execute(
                    inbox.insert(),
                    {
                        "source": row["source"],
                        "external_id": ext,
                        "received_at": now,
                        "status": status,
                        "touchpoint_id": tp,
                        "payload": row["payload"] if ingestor.keep_raw else None,
                    },
                )
            if ev is None:
                result.filtered += 1
            else:
                events.append(ev)
        ingestor._store_events(conn, events, now)
        result.stored = len(events)
        result.events = events
    return result


def _requeue(conn: Connection, qid: int, reason: str) -> None:
    conn.execute(update(quarantine).where(quarantine.c.id == qid).values(reason=reason))


def replay_dead_letters(
    ingestor: Ingestor,
    mappings: dict[str, CompiledMapping],
    transport: TransportConfig,
    *,
    seqs: Sequence[int] | None = None,
    source: str | None = None,
) -> IngestResult:
    """Run the records of the ``nats`` transport's dead-letter stream through the ingest again
    (after a fix), one source at a time in one transaction each; the dead letters of every source
    that committed are deleted from the stream, the others stay (``cxhub quarantine`` shows them)."""
    from hub.transport.nats import decode, delete_dead_letters, take_dead_letters

    result = IngestResult()
    letters = take_dead_letters(transport, source=source, seqs=seqs)
    groups: dict[str, list[tuple[int, RawRecord | Rejected]]] = {}
    for dl in letters:
        try:
            src, rec = decode(dl.data)
        except ValueError:
            result.read += 1
            result.quarantined += 1  # not a record: it stays where it is
            continue
        groups.setdefault(src, []).append((dl.seq, rec))
    done: list[int] = []
    for src, items in groups.items():
        mapping = mappings.get(src)
        if mapping is None:
            result.read += len(items)
            result.quarantined += len(items)
            continue
        records = [r for _, r in items if isinstance(r, RawRecord)]
        rejected = [r for _, r in items if isinstance(r, Rejected)]
        try:
            got = ingestor.ingest(src, mapping, records, rejected=rejected)
        except Exception:
            result.read += len(items)
            result.quarantined += len(items)
            continue
        result.add(got)
        result.events += got.events
        done += [seq for seq, _ in items]
    if done:
        delete_dead_letters(transport, done)
    return result
