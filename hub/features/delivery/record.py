"""Recording outcomes: retries with backoff, dead letters, and the writes that record them.

``sent`` with the platform receipt; ``failed`` with backoff (Retry-After honoured); ``dead`` with
the reason for permanent errors or after ``max_attempts``. Every write is guarded by
``locked_by`` (:func:`hub.outbox.outcomes.record`): a worker that lost its lease records nothing.

With several sending threads, outcomes are **group-committed**: the pump's own thread writes
whatever outcomes have arrived since its last write in one statement (PostgreSQL, autocommit), on
one connection held for the pump (:meth:`Recorder.connection`). Nothing waits for a group to
fill: an outcome is written as soon as the previous write (or claim) is done, so the window
between a platform's answer and its record stays a commit or two long, as with one transaction
per send, at a fraction of the round trips. With one sending thread (SQLite, or
``concurrency=1``) each outcome is written before the next send.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection

from hub.features.delivery import metrics
from hub.features.delivery.units import Outcome, Step, Unit
from hub.outbox import outcomes as outbox_outcomes
from hub.sdk.policy import RetryPolicy

log = logging.getLogger("cxhub.delivery")


def retry_outcome(policy: RetryPolicy, unit: Unit, error: str, retry_after: float | None, now: datetime) -> Outcome:
    """A failed send: ``failed`` with the next attempt after backoff (``retry_after`` when the
    platform said), or ``dead`` once the unit's rows have had ``max_attempts``."""
    attempts = max(r.attempts for r in unit.rows)
    if attempts >= policy.max_attempts:
        return Outcome(unit, "dead", error=f"gave up after {attempts} attempts: {error}")
    return Outcome(unit, "failed", error=error, next_at=policy.next_attempt(now, attempts, retry_after))


class Recorder(Step):
    """Writes the outcomes of one worker's sends, and counts them in the metrics once written."""

    # settings (store, clock, worker_id, lease, policy, budgets...) come from :class:`Step`

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """The connection a pump records outcomes on. PostgreSQL: autocommit, because each write
        is one statement (atomic by itself), so it costs one round trip instead of BEGIN, UPDATE
        and COMMIT; held for the pump, so no pool check-out (and ping) per write either."""
        with self.store.connect() as conn:
            if not self.store.is_sqlite:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def write(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Record ``outcomes`` on the pump's connection (see :meth:`connection`); rows whose lease
        this worker lost are neither written nor counted."""
        now = self.clock()
        data = [(r.id, o.status, *o.values()) for o in outcomes for r in o.unit.rows]
        missing = outbox_outcomes.record(conn, data, worker_id=self.worker_id, now=now)
        lost = set(missing)
        counts: dict[tuple[str, str], int] = {}
        for o in outcomes:
            for r in o.unit.rows:
                if r.id not in lost:
                    counts[(r.destination, o.status)] = counts.get((r.destination, o.status), 0) + 1
        for (name, status), k in counts.items():
            metrics.count_outcomes(name, status, k)
        if missing:
            log.warning("outbox rows %s: lease lost before recording the outcome", sorted(missing))
