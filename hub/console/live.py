"""The console's live updates: a feed in the store, read by every process, sent as server-sent events.

A feature that changes something a page shows calls :func:`publish` in the transaction of the
change (a case opened by the ingest in one process, acknowledged from a card in another): the row
commits with its cause or not at all. Each console process runs one :class:`FeedReader` that reads
the new rows every ``poll_seconds`` (one query whatever the number of open pages) and hands each
row to the subscribers whose user may see its store. ``GET /console/events`` streams them; the
browser turns each one into a ``cx:<topic>`` event that htmx elements refresh on. Rows older than
an hour are deleted by the reader of the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, insert, select

from hub.console.schema import console_feed
from hub.console.scope import Principal
from hub.store import Store

log = logging.getLogger("cxhub.console")

KEEP = timedelta(hours=1)


def publish(
    conn: Connection, at: datetime, topic: str, *, store: str | None = None, ref: str | None = None, **data: Any
) -> None:
    """Tell the live pages about a change, in the caller's transaction. ``data`` holds ids and
    states only (it goes to every page allowed to see ``store``), never personal data."""
    conn.execute(insert(console_feed).values(at=at, topic=topic, store=store, ref=ref, data=data))


@dataclass(frozen=True)
class FeedEvent:
    id: int
    topic: str
    store: str | None
    ref: str | None
    data: Mapping[str, Any]

    def sse(self) -> bytes:
        body = orjson.dumps({"topic": self.topic, "ref": self.ref, "store": self.store, **self.data})
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.topic.encode(), body)


def hears(principal: Principal, ev: FeedEvent) -> bool:
    """Whether a page of ``principal`` gets ``ev``: an event of a store goes to those who may see
    the store; an event of no store (a source, the quarantine, the outbox) to those who see the
    whole organisation's data or run its connectors."""
    if ev.store is not None:
        return principal.sees_store(ev.store)
    return principal.can("ops.read") or principal.sees_store(None)


class FeedReader:
    """One per process: polls the feed and fans it out to the open event streams."""

    def __init__(self, store: Store, *, poll_seconds: float = 0.5):
        self.store = store
        self.poll_seconds = poll_seconds
        self._subscribers: set[tuple[Principal, asyncio.Queue[FeedEvent]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last: int | None = None
        self._purged_at: datetime | None = None

    def _read(self) -> list[FeedEvent]:
        with self.store.connect() as conn:
            if self._last is None:
                self._last = int(conn.execute(select(func.coalesce(func.max(console_feed.c.id), 0))).scalar_one())
                return []
            rows = conn.execute(
                select(console_feed).where(console_feed.c.id > self._last).order_by(console_feed.c.id).limit(500)
            ).mappings()
            out = [FeedEvent(r["id"], r["topic"], r["store"], r["ref"], r["data"] or {}) for r in rows]
        if out:
            self._last = out[-1].id
        now = self.store.clock()
        if self._purged_at is None or now - self._purged_at > timedelta(minutes=10):
            self._purged_at = now
            with self.store.begin() as conn:
                conn.execute(delete(console_feed).where(console_feed.c.at < now - KEEP))
        return out

    async def _run(self) -> None:
        while self._subscribers:
            try:
                events = await asyncio.to_thread(self._read)
            except Exception:  # a store hiccup must not end the streams; the next poll retries
                log.warning("console feed: read failed; retrying", exc_info=True)
                events = []
            for ev in events:
                for principal, queue in list(self._subscribers):
                    if hears(principal, ev) and queue.qsize() < 1000:
                        queue.put_nowait(ev)
            await asyncio.sleep(self.poll_seconds)
        self._task = None

    async def prime(self) -> None:
        """Start at the feed's end (a new page needs no history: it rendered the present)."""
        if self._last is None:
            await asyncio.to_thread(self._read)

    async def subscribe(self, principal: Principal, *, heartbeat: float = 15.0) -> AsyncIterator[bytes]:
        await self.prime()
        queue: asyncio.Queue[FeedEvent] = asyncio.Queue()
        entry = (principal, queue)
        self._subscribers.add(entry)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        try:
            yield b"retry: 2000\n\n"
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=heartbeat)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield ev.sse()
        finally:
            self._subscribers.discard(entry)

    async def close(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
