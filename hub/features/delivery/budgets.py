"""Per-destination rate budgets kept in the store, so every process shares them.

A budget is a sliding window: at most ``limit`` sends in any ``per_seconds`` (plus a small safety
margin, because the platform counts arrivals and we count departures). Each reservation is a row
in ``delivery_sends``; the bucket's row in ``delivery_buckets`` is locked (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite transactions are already serialised) while a process counts and
reserves, so two processes never both take the last slot. The statements are in
:mod:`hub.outbox.rates`; this module decides what the counts allow.

A fixed window ("20 per calendar minute") would let 20 go at :59 and 20 more at :00, which is 40
in one real minute: DingTalk would block the robot for ten minutes. Hence the sliding log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from hub.outbox import rates
from hub.sdk.connector import RateLimit


@dataclass(frozen=True)
class Bucket:
    """One budget: a name in the store and the limit it enforces."""

    name: str
    limit: RateLimit


@dataclass(frozen=True)
class BucketState:
    """How many sends a bucket allows now, and when the next slot frees when it allows none."""

    available: int
    next_free: datetime | None


def _safe_name(name: str) -> str:
    if len(name) <= 255:
        return name
    return name[:200] + "#" + hashlib.sha256(name.encode()).hexdigest()[:32]


def buckets_for(
    destination: str,
    limits: Sequence[RateLimit],
    recipients: Iterable[str] = (),
    tag: Callable[[str], str] | None = None,
) -> list[Bucket]:
    """The buckets a send to ``recipients`` of ``destination`` uses. A per-recipient bucket is
    named by ``tag(recipient)`` (a keyed digest: a phone number is never stored as a name)."""
    tag = tag or (lambda r: hashlib.sha256(r.encode()).hexdigest()[:24])
    out: list[Bucket] = []
    recipients = list(recipients)
    for lim in limits:
        base = f"{destination}|{lim.limit}/{lim.per_seconds:g}s"
        if lim.scope == "recipient":
            out.extend(Bucket(_safe_name(f"{base}|{tag(r)}"), lim) for r in recipients)
        else:
            out.append(Bucket(_safe_name(base), lim))
    return out


class Budgets:
    """Counting, reserving and blocking, inside the caller's transaction."""

    def __init__(self, margin_seconds: float = 1.0):
        self.margin = timedelta(seconds=margin_seconds)

    def blocked_until(self, conn: Connection, destination: str, now: datetime) -> datetime | None:
        """When the platform's block on ``destination`` ends, or None when it is not blocked."""
        until = rates.blocked_until(conn, _safe_name(destination))
        if until is None or until <= now:
            return None
        return until

    def state(self, conn: Connection, bucket: Bucket, now: datetime) -> BucketState:
        """Lock ``bucket`` for this transaction and count its window."""
        blocked = rates.lock(conn, bucket.name, now)
        if blocked is not None and blocked > now:
            return BucketState(0, blocked)
        window = timedelta(seconds=bucket.limit.per_seconds) + self.margin
        since = now - window
        times = rates.window(conn, bucket.name, since)
        available = bucket.limit.limit - len(times)
        if available > 0:
            return BucketState(available, None)
        # the oldest reservations must age out until one slot is free
        return BucketState(0, times[len(times) - bucket.limit.limit] + window)

    def combined(self, conn: Connection, buckets: Sequence[Bucket], now: datetime) -> BucketState:
        """The tightest of several buckets (Feishu bot: 5/s and 100/min)."""
        states = [self.state(conn, b, now) for b in buckets]
        if not states:
            return BucketState(1 << 30, None)
        available = min(s.available for s in states)
        if available > 0:
            return BucketState(available, None)
        return BucketState(0, max(s.next_free for s in states if s.next_free is not None))

    def take(self, conn: Connection, buckets: Sequence[Bucket], count: int, now: datetime) -> None:
        """Reserve ``count`` sends now in each of ``buckets`` (locked by :meth:`state` first)."""
        if count <= 0:
            return
        rates.reserve(conn, [b.name for b in buckets], count, now)

    def block(self, conn: Connection, destination: str, until: datetime, reason: str, now: datetime) -> None:
        """Remember that the platform blocks ``destination`` until ``until`` (every process sees it)."""
        rates.block(conn, _safe_name(destination), until, reason, now)

    def sends_in_window(self, conn: Connection, bucket: Bucket, now: datetime) -> int:
        """How many reservations ``bucket`` holds in its current window (for status and tests)."""
        since = now - timedelta(seconds=bucket.limit.per_seconds) - self.margin
        return rates.count_since(conn, bucket.name, since)


__all__ = ["Bucket", "BucketState", "Budgets", "buckets_for"]
