"""What the steps of a pump hand each other: send units, their outcomes, and the pump's tally."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.outbox.leases import Claimed
from hub.sdk.connector import Clock, Destination
from hub.sdk.policy import RetryPolicy
from hub.store import Store

if TYPE_CHECKING:
    from hub.features.delivery.budgets import Budgets


@dataclass
class Unit:
    """What one platform call sends: one row, or a digest of several."""

    rows: list[Claimed]
    batch_key: str | None = None

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.rows]


@dataclass
class Outcome:
    """What a send came to, waiting to be recorded."""

    unit: Unit
    status: str  # sent / failed / dead
    receipt: str | None = None
    error: str | None = None
    next_at: datetime | None = None

    def values(self) -> tuple[str | None, str | None, datetime | None]:
        """(receipt, last_error, next_attempt_at) to record; None keeps receipt and next attempt."""
        if self.status == "sent":
            return (self.receipt or "")[:2000], None, None
        return None, (self.error or "")[:2000], self.next_at


@dataclass
class PumpResult:
    """What one pump did (for logs, metrics and tests)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    calls: int = 0
    digests: int = 0

    def __bool__(self) -> bool:
        return self.claimed > 0


@dataclass
class WorkerSettings:
    """One worker's settings, shared by its steps (claim, send, record): a change made on the
    worker (``worker.batch_size = 10``) reaches every step."""

    store: Store
    resolve: Callable[[str], Destination]
    destinations: list[str]
    clock: Clock
    worker_id: str
    batch_size: int
    lease: timedelta
    policy: RetryPolicy
    budgets: Budgets


def _setting(name: str) -> Any:
    return property(lambda self: getattr(self.settings, name), lambda self, value: setattr(self.settings, name, value))


class Step:
    """Works with one worker's :class:`WorkerSettings` as its own attributes (the worker and its
    claim, send and record steps): reading or changing one reads or changes it for all of them."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings

    store = _setting("store")
    resolve = _setting("resolve")
    destinations = _setting("destinations")
    clock = _setting("clock")
    worker_id = _setting("worker_id")
    batch_size = _setting("batch_size")
    lease = _setting("lease")
    policy = _setting("policy")
    budgets = _setting("budgets")


__all__ = ["Claimed", "Outcome", "PumpResult", "Step", "Unit", "WorkerSettings"]
