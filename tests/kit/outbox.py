"""Outbox helpers for delivery and destination tests: enqueue, read rows, a worker, a scripted destination."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sqlalchemy import select

from hub.errors import PermanentError, RetriableError
from hub.features.delivery.worker import DeliveryWorker
from hub.outbox import enqueue
from hub.sdk.connector import ConnectorOptions, Destination, OutboundMessage, Receipt
from hub.sdk.policy import RetryPolicy
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import outbox

FAST = RetryPolicy(initial=1.0, max_delay=30.0, max_attempts=10, jitter=0.5)


def put(store: Store, clock: FakeClock, destination: str, messages: list[OutboundMessage]) -> None:
    with store.begin() as conn:
        for m in messages:
            assert enqueue(conn, destination=destination, message=m, now=clock(), cause="test")


def msgs(n: int, *, to: list[str] | None = None, size: int = 0, prefix: str = "m") -> list[OutboundMessage]:
    pad = "评" * (size // 3)
    return [
        OutboundMessage(key=f"{prefix}-{i}", title=f"通知 {i}", body=f"token-{prefix}-{i}-end {pad}", to=list(to or []))
        for i in range(n)
    ]


def rows(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]


def worker(store: Store, clock: FakeClock, dests: dict[str, Destination], **kw: Any) -> DeliveryWorker:
    kw.setdefault("policy", FAST)
    kw.setdefault("lease_seconds", 60)
    return DeliveryWorker(store, dests.__getitem__, dests, clock=clock, **kw)


def run_until_done(w: DeliveryWorker, clock: FakeClock, *, step: float = 1.0, limit: int = 5000, store: Store) -> int:
    """Pump, moving the fake clock ``step`` seconds between pumps, until every row is final."""
    for i in range(limit):
        w.run_once()
        if all(r["status"] in ("sent", "dead") for r in rows(store)):
            return i
        clock.advance(seconds=step)
    raise AssertionError(f"not done after {limit} pumps: {[(r['id'], r['status']) for r in rows(store)]}")


class Scripted(Destination):
    """Answers by key prefix: ``ok-`` sent, ``busy-`` retriable, ``bad-`` permanent. Thread-safe."""

    kind = "scripted"
    title = "test double"

    def __init__(self, delay: float = 0.0):
        super().__init__("scripted", ConnectorOptions())
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.delay = delay
        self.threads: set[str] = set()

    def send(self, message: OutboundMessage) -> Receipt:
        with self.lock:
            self.calls[message.key] += 1
            self.threads.add(threading.current_thread().name)
        if self.delay:
            threading.Event().wait(self.delay)  # a slow platform: let the threads overlap
        if message.key.startswith("busy-"):
            raise RetriableError("system busy", retry_after=30)
        if message.key.startswith("bad-"):
            raise PermanentError("invalid recipient", code=40003)
        return Receipt(message_id=f"id-{message.key}")


def keyed(*keys: str) -> list[OutboundMessage]:
    return [OutboundMessage(key=k, title="t", body=f"body {k}", to=["u1"]) for k in keys]
