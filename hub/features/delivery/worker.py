"""The delivery worker: claim due outbox rows, respect budgets (or digest), send, record.

One pump (:meth:`DeliveryWorker.run_once`):

1. **Claim** in one transaction: due rows (``pending``/``failed`` whose ``next_attempt_at`` has
   come, or ``sending`` rows whose lease expired because their worker died) are locked with
   ``FOR UPDATE SKIP LOCKED`` (several processes share one PostgreSQL without waiting on each
   other), marked ``sending`` with ``locked_by``/``locked_until`` (the lease) and ``attempts + 1``.
   On PostgreSQL that is one statement: ``WITH picked AS MATERIALIZED (SELECT id ... FOR UPDATE
   SKIP LOCKED LIMIT n), claimed AS (UPDATE outbox ... FROM picked RETURNING ...) SELECT ... LEFT
   JOIN outbox_batches``.
2. **Plan** in the same transaction, per destination: a platform block (DingTalk 130101) puts the
   rows back until it ends; otherwise the shared budget says how many sends are allowed now. When
   the backlog is larger, messages are combined into digests (as few as the body limit allows);
   digest membership is stored, so a digest that fails is retried with the same members and key.
   What still does not fit goes back to ``pending`` until the next slot frees (no attempt used).
3. **Send** each unit outside any transaction, then **record** the outcome guarded by
   ``locked_by`` (a worker that lost its lease records nothing): ``sent`` with the platform
   receipt; ``failed`` with backoff (Retry-After honoured); ``dead`` with the reason for permanent
   errors or after ``max_attempts``.

   With several sending threads, outcomes are **group-committed**: the pump's own thread writes
   whatever outcomes have arrived since its last write in one ``UPDATE ... FROM unnest(...)``
   statement (PostgreSQL, autocommit), on one connection held for the pump. Nothing waits for a
   group to fill: an outcome is written as soon as the previous write (or claim) is done, so the
   window between a platform's answer and its record stays a commit or two long, as with one
   transaction per send, at a fraction of the round trips. With one sending thread (SQLite, or
   ``concurrency=1``) each outcome is written before the next send.
4. **Pipeline**: when a full batch is down to as many queued units as there are threads, the next
   batch is claimed (steps 1-2) and queued behind it, for up to ``pump_seconds``.

A crash between send and record leaves the row ``sending``; when the lease expires another worker
sends it again with the **same idempotency key** (passed to the platform where it has one). The
lease is longer than any single send (``lease_seconds`` > connector timeout x 2), and is renewed
before each send once half of it has passed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from hub.errors import ConnectorError, CxhubError, PermanentError, RetriableError
from hub.features.delivery import metrics
from hub.features.delivery.budgets import Budgets, buckets_for
from hub.features.delivery.schema import outbox_batches
from hub.outbox import message_from_dict
from hub.sdk.connector import Clock, Destination, OutboundMessage, utcnow
from hub.sdk.policy import RetryPolicy, Throttled
from hub.sdk.render import digest_key, mask_message, pack_digests, render_digest
from hub.store import Store
from hub.store.schema import UTCDateTime, outbox

log = logging.getLogger("cxhub.delivery")

DEFAULT_DIGEST_BYTES = 4000


@dataclass
class Claimed:
    """An outbox row this worker holds the lease on."""

    id: int
    key: str
    destination: str
    message: OutboundMessage
    attempts: int
    last_error: str | None
    batch_key: str | None = None


@dataclass
class Unit:
    """What one platform call sends: one row, or a digest of several."""

    rows: list[Claimed]
    batch_key: str | None = None

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.rows]


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
class _Plan:
    units: list[Unit] = field(default_factory=list)
    deferred: int = 0


@dataclass
class _Batch:
    """One claim, planned: what to send (as tasks for the pool) and when it was claimed."""

    tasks: list[list[Unit]]
    claimed_at: datetime
    full: bool


def default_worker_id() -> str:
    """``host:pid:random``: unique per worker, readable in ``cxhub outbox``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DeliveryWorker:
    """Claims, plans, sends and records. ``resolve(name)`` returns the destination connector.

    ``destinations``: the names this worker serves (enabled ones in the config); rows for others
    stay pending and show in ``cxhub outbox``.
    """

    def __init__(
        self,
        store: Store,
        resolve: Callable[[str], Destination],
        destinations: Iterable[str],
        *,
        clock: Clock = utcnow,
        worker_id: str | None = None,
        batch_size: int = 50,
        lease_seconds: float = 120.0,
        policy: RetryPolicy | None = None,
        budgets: Budgets | None = None,
        concurrency: int = 4,
        pump_seconds: float = 5.0,
    ):
        self.store = store
        self.resolve = resolve
        self.destinations = sorted(set(destinations))
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.policy = policy or RetryPolicy()
        self.budgets = budgets or Budgets()
        # platform calls are I/O: overlap a few; SQLite serialises writers, so one at a time there
        self.concurrency = 1 if store.is_sqlite else max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        #: how long one pump may keep claiming further batches (``stop()`` waits for the pump)
        self.pump_seconds = pump_seconds

    # ------------------------------------------------------------------ pump

    def run_once(self) -> PumpResult:
        """Claim due rows, send them (or their digests) and record the outcomes.

        With several sending threads, a pump whose claim came back full keeps the threads busy: when
        no more units are queued than there are threads, it claims the next batch while the last
        ones are still in flight (for up to ``pump_seconds``), instead of letting them idle through
        the tail of the batch and the next claim.
        """
        result = PumpResult()
        if not self.destinations:
            return result
        first = self._next_batch(result)
        if first is None:
            return result
        blocked: dict[str, datetime] = {}
        lock = threading.Lock()

        def one(unit: Unit, claimed_at: datetime, record: Callable[[Outcome], None]) -> None:
            dest = unit.rows[0].destination
            until = blocked.get(dest)
            if until is not None:  # throttled earlier in this pump: do not hammer the platform
                with self.store.begin() as conn:
                    self._release(conn, unit.rows, until)
                with lock:
                    result.deferred += len(unit.rows)
                return
            part = PumpResult()
            outcome, throttled_until = self._deliver(unit, claimed_at, part)
            if outcome is not None:
                record(outcome)
            with lock:
                for f in ("sent", "failed", "dead", "deferred", "calls", "digests"):
                    setattr(result, f, getattr(result, f) + getattr(part, f))
                if throttled_until is not None:
                    blocked[dest] = throttled_until

        if self.concurrency == 1 or len(first.tasks) == 1:
            with self._recorder() as conn:
                for t in first.tasks:
                    for u in t:
                        one(u, first.claimed_at, lambda outcome: self._write_outcomes(conn, [outcome]))
        else:
            self._run_parallel(first, one, result)
        return result

    def _next_batch(self, result: PumpResult) -> _Batch | None:
        """Claim and plan one batch (one transaction); None when nothing is due."""
        now = self.clock()
        with self.store.begin() as conn:
            rows = self._claim(conn, now)
            if not rows:
                return None
            plan = self._plan(conn, rows, now)
        result.claimed += len(rows)
        result.deferred += plan.deferred
        # Group robots (digests) are sent to in order, one at a time: a chat shows messages in the
        # order sent, their budgets are tiny, and the first throttle answer stops the rest of their
        # units. Every other unit goes out in parallel (their budgets were reserved in the plan).
        tasks: list[list[Unit]] = []
        serial: dict[str, list[Unit]] = {}
        for unit in plan.units:
            dest = unit.rows[0].destination
            dst = self.resolve(dest)
            if getattr(dst, "rate_limits", ()) and getattr(dst, "supports_digest", False):
                if dest not in serial:
                    serial[dest] = []
                    tasks.append(serial[dest])
                serial[dest].append(unit)
            else:
                tasks.append([unit])
        # only a full claim suggests more is due; a serial destination must not overlap itself
        return _Batch(tasks, now, full=len(rows) >= self.batch_size and not serial)

    @contextlib.contextmanager
    def _recorder(self) -> Iterator[Connection]:
        """The connection a pump records outcomes on. PostgreSQL: autocommit, because each write
        is one statement (atomic by itself), so it costs one round trip instead of BEGIN, UPDATE
        and COMMIT; held for the pump, so no pool check-out (and ping) per write either."""
        with self.store.connect() as conn:
            if not self.store.is_sqlite:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def _run_parallel(
        self,
        first: _Batch,
        one: Callable[[Unit, datetime, Callable[[Outcome], None]], None],
        result: PumpResult,
    ) -> None:
        """Send on the pool; this thread group-commits the outcomes as they arrive, and claims the
        next batch when the pool is about to run dry."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cxhub-send")
        pool = self._pool
        inbox: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        futures: list[Future[None]] = []

        def submit(batch: _Batch) -> None:
            def run(units: list[Unit]) -> None:
                try:
                    for u in units:
                        one(u, batch.claimed_at, inbox.put)
                finally:
                    inbox.put(None)  # this task is done (also when it failed)

            futures.extend(pool.submit(run, t) for t in batch.tasks)

        submit(first)
        more = first.full
        deadline = time.monotonic() + self.pump_seconds
        try:
            with self._recorder() as conn:
                done = 0
                while done < len(futures):
                    item = inbox.get()
                    group: list[Outcome] = []
                    while True:
                        if item is None:
                            done += 1
                        else:
                            group.append(item)
                        try:
                            item = inbox.get_nowait()
                        except queue.Empty:
                            break
                    if group:
                        self._write_outcomes(conn, group)
                    if more and len(futures) - done <= self.concurrency:
                        nxt = self._next_batch(result) if time.monotonic() < deadline else None
                        more = nxt is not None and nxt.full
                        if nxt is not None:
                            submit(nxt)
        finally:
            # never leave sends running into the next pump (nor unrecorded behind an error)
            wait(futures)
        for f in futures:
            f.result()  # a task's error (the store went away mid-pump) surfaces here

    def refresh_metrics(self) -> dict[str, tuple[int, float]]:
        """Set the backlog gauges (``cxhub_delivery_backlog``, ``..._oldest_pending_age_seconds``)
        from the store: one ``GROUP BY`` over the rows that are not final."""
        with self.store.connect() as conn:
            return metrics.refresh_backlog(conn, self.clock(), self.destinations)

    def close(self) -> None:
        """Stop the sending threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def drain(self, max_pumps: int = 1000) -> PumpResult:
        """Pump until nothing is due (tests, ``cxhub outbox flush``); returns the totals."""
        total = PumpResult()
        for _ in range(max_pumps):
            r = self.run_once()
            if not r:
                break
            for f in ("claimed", "sent", "failed", "dead", "deferred", "calls", "digests"):
                setattr(total, f, getattr(total, f) + getattr(r, f))
        return total

    # ------------------------------------------------------------------ claim

    def _due(self, now: datetime) -> Any:
        return or_(
            and_(outbox.c.status.in_(("pending", "failed")), outbox.c.next_attempt_at <= now),
            and_(outbox.c.status == "sending", outbox.c.locked_until <= now),
        )

    def _claiming(self, now: datetime) -> dict[str, Any]:
        return {
            "status": "sending",
            "locked_by": self.worker_id,
            "locked_until": now + self.lease,
            "attempts": outbox.c.attempts + 1,
            "updated_at": now,
        }

    def _picked(self, q: Any, name: str) -> Any:
        """The rows to lock, as something an UPDATE can join: on PostgreSQL a ``MATERIALIZED`` CTE,
        so the locking ``LIMIT`` query runs exactly once whatever join the planner picks."""
        if self.store.is_sqlite:
            return q.subquery(name)
        return q.cte(name).prefix_with("MATERIALIZED")

    def _claim(self, conn: Connection, now: datetime) -> list[Claimed]:
        picked_q = (
            select(outbox.c.id)
            .where(self._due(now), outbox.c.destination.in_(self.destinations))
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True)
        )
        picked = self._picked(picked_q, "picked")
        claim = (
            update(outbox).where(outbox.c.id == picked.c.id).values(**self._claiming(now)).returning(*_CLAIMED_COLUMNS)
        )
        if self.store.is_sqlite:  # no DML in a CTE there; one process, so two statements are fine
            got = conn.execute(claim).all()
            ids = [r.id for r in got]
            batches: dict[int, str] = (
                dict(
                    conn.execute(
                        select(outbox_batches.c.outbox_id, outbox_batches.c.batch_key).where(
                            outbox_batches.c.outbox_id.in_(ids)
                        )
                    ).all()
                )
                if ids
                else {}
            )
            rows = [(r, batches.get(r.id)) for r in got]
        else:  # one round trip: claim, and the digest each row belongs to
            claimed = claim.cte("claimed")
            q = select(claimed, outbox_batches.c.batch_key).select_from(
                claimed.outerjoin(outbox_batches, outbox_batches.c.outbox_id == claimed.c.id)
            )
            rows = [(r, r.batch_key) for r in conn.execute(q)]
        if not rows:
            return []
        out = {r.id: _claimed(r, bk) for r, bk in rows}
        if any(c.batch_key for c in out.values()):
            self._complete_batches(conn, now, out)
        return [out[i] for i in sorted(out)]

    def _complete_batches(self, conn: Connection, now: datetime, out: dict[int, Claimed]) -> None:
        """A digest is sent whole or not at all: claim its missing members too, or give it up.

        ``LIMIT`` can cut through a digest, or another worker may hold part of it (its lease ran
        out while this worker claimed the rest): the members this worker could not get are left
        to the other, and the ones it got are put back unchanged.
        """
        keys = {c.batch_key for c in out.values() if c.batch_key}
        members: dict[str, set[int]] = {}
        for oid, bk in conn.execute(
            select(outbox_batches.c.outbox_id, outbox_batches.c.batch_key).where(outbox_batches.c.batch_key.in_(keys))
        ):
            members.setdefault(bk, set()).add(oid)
        for bk, mids in members.items():
            missing = mids - set(out)
            if not missing:
                continue
            lockable = self._picked(
                select(outbox.c.id).where(outbox.c.id.in_(missing), self._due(now)).with_for_update(skip_locked=True),
                "lockable",
            )
            got = conn.execute(
                update(outbox)
                .where(outbox.c.id == lockable.c.id)
                .values(**self._claiming(now))
                .returning(*_CLAIMED_COLUMNS)
            ).all()
            for r in got:
                out[r.id] = _claimed(r, bk)
            if {r.id for r in got} != missing:  # incomplete: give back what this worker holds of it
                mine = [out.pop(i) for i in sorted(mids) if i in out]
                self._unclaim(conn, mine, now)

    def _unclaim(self, conn: Connection, rows: Sequence[Claimed], now: datetime) -> None:
        """Undo a claim in the claiming transaction: status from the last error, attempt given back."""
        for status in ("pending", "failed"):
            ids = [r.id for r in rows if (status == "failed") == bool(r.last_error)]
            if ids:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids), outbox.c.locked_by == self.worker_id)
                    .values(
                        status=status,
                        attempts=outbox.c.attempts - 1,
                        locked_by=None,
                        locked_until=None,
                        updated_at=now,
                    )
                )

    # ------------------------------------------------------------------ plan

    def _plan(self, conn: Connection, rows: list[Claimed], now: datetime) -> _Plan:
        plan = _Plan()
        by_dest: dict[str, list[Claimed]] = {}
        for r in rows:
            by_dest.setdefault(r.destination, []).append(r)
        for name, group in by_dest.items():
            try:
                dst = self.resolve(name)
            except CxhubError as exc:
                # a destination that cannot be built (bad secret file...) waits; it is retried
                self._release(conn, group, now + timedelta(seconds=self.policy.delay(1)), str(exc))
                plan.deferred += len(group)
                continue
            blocked = self.budgets.blocked_until(conn, name, now)
            if blocked is not None:
                self._release(conn, group, blocked)
                plan.deferred += len(group)
                continue
            limits = tuple(getattr(dst, "rate_limits", ()))
            if not limits:
                plan.units.extend(_units(group))
                continue
            per_recipient = any(lim.scope == "recipient" for lim in limits)
            subgroups: dict[tuple[str, ...], list[Claimed]] = {}
            for r in group:
                subgroups.setdefault(tuple(sorted(r.message.to)) if per_recipient else (), []).append(r)
            for recipients, sub in subgroups.items():
                buckets = buckets_for(name, limits, recipients)
                state = self.budgets.combined(conn, buckets, now)
                units = _units(sub)
                if len(units) > state.available > 0 and getattr(dst, "supports_digest", False):
                    units = self._digest_units(conn, dst, units)
                send, rest = units[: state.available], units[state.available :]
                self.budgets.take(conn, buckets, len(send), now)
                plan.units.extend(send)
                if rest:
                    after = self.budgets.combined(conn, buckets, now).next_free or now + timedelta(seconds=1)
                    released = [r for u in rest for r in u.rows]
                    self._release(conn, released, after)
                    plan.deferred += len(released)
        return plan

    def _digest_units(self, conn: Connection, dst: Destination, units: list[Unit]) -> list[Unit]:
        """Keep existing digests; pack the single messages into as few new digests as fit."""
        existing = [u for u in units if u.batch_key]
        singles = [u.rows[0] for u in units if not u.batch_key]
        max_bytes = dst.max_body_bytes or DEFAULT_DIGEST_BYTES
        packs = pack_digests([r.message for r in singles], max_bytes)
        new_units = []
        for idx in packs:
            rows = [singles[i] for i in idx]
            if len(rows) == 1:
                new_units.append(Unit(rows))
            else:
                new_units.append(Unit(rows, digest_key([r.key for r in rows])[len("digest:") :][:64]))
        return existing + new_units

    def _release(self, conn: Connection, rows: Sequence[Claimed], when: datetime, error: str | None = None) -> None:
        """Put claimed rows back, unsent, without using up an attempt."""
        now = self.clock()
        for status in ("pending", "failed"):
            ids = [r.id for r in rows if (status == "failed") == bool(error or r.last_error)]
            if not ids:
                continue
            values: dict[str, Any] = {
                "status": status,
                "attempts": outbox.c.attempts - 1,
                "locked_by": None,
                "locked_until": None,
                "next_attempt_at": when,
                "updated_at": now,
            }
            if error:
                values["last_error"] = error[:2000]
            conn.execute(
                update(outbox).where(outbox.c.id.in_(ids), outbox.c.locked_by == self.worker_id).values(**values)
            )

    # ------------------------------------------------------------------ send and record

    def _message(self, dst: Destination, unit: Unit) -> OutboundMessage:
        mask = getattr(dst.options, "mask_personal_data", None)
        if mask is None:
            mask = getattr(dst, "staff_facing", False)
        messages = [mask_message(r.message) if mask else r.message for r in unit.rows]
        if len(messages) == 1:
            return messages[0]
        return render_digest(messages, dst.max_body_bytes or DEFAULT_DIGEST_BYTES)

    def _renew(self, unit: Unit) -> bool:
        now = self.clock()
        with self.store.begin() as conn:
            n = conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(unit.ids), outbox.c.locked_by == self.worker_id, outbox.c.status == "sending")
                .values(locked_until=now + self.lease, updated_at=now)
            ).rowcount
        return n == len(unit.ids)

    def _deliver(self, unit: Unit, claimed_at: datetime, result: PumpResult) -> tuple[Outcome | None, datetime | None]:
        """Send one unit. Returns its outcome to record (None when there is nothing to record: the
        lease was lost, or a throttle answer was recorded at once) and the end of a platform block."""
        if self.clock() - claimed_at > self.lease / 2 and not self._renew(unit):
            log.warning("lease lost on outbox rows %s before sending; another worker has them", unit.ids)
            return None, None
        name = unit.rows[0].destination
        dst = self.resolve(name)
        if unit.batch_key and len(unit.rows) > 1:
            # the membership is committed before the send: a crash after it resends the same digest
            with self.store.begin() as conn:
                conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(unit.ids)))
                conn.execute(insert(outbox_batches), [{"outbox_id": i, "batch_key": unit.batch_key} for i in unit.ids])
            result.digests += 1
        message = self._message(dst, unit)
        result.calls += 1
        n = len(unit.rows)
        retried = sum(1 for r in unit.rows if r.attempts > 1)
        if retried:
            metrics.RETRIES.labels(name).inc(retried)
        started = time.perf_counter()
        try:
            try:
                receipt = dst.send(message)
            finally:
                metrics.SEND_SECONDS.labels(name).observe(time.perf_counter() - started)
        except Throttled as exc:
            result.failed += n
            return None, self._throttled(dst, unit, exc)
        except PermanentError as exc:
            result.dead += n
            return Outcome(unit, "dead", error=str(exc)), None
        except Exception as exc:
            if isinstance(exc, RetriableError):
                error, retry_after = str(exc), exc.retry_after
            elif isinstance(exc, ConnectorError):
                error, retry_after = str(exc), None
            else:  # a connector bug must not stop delivery of everything else
                log.exception("destination %s raised unexpectedly; the message is retried", name)
                error, retry_after = f"internal error: {type(exc).__name__}: {exc}", None
            outcome = self._retry(unit, error, retry_after)
            if outcome.status == "dead":
                result.dead += n
            else:
                result.failed += n
            return outcome, None
        detail = receipt.message_id or receipt.detail or ""
        if len(unit.rows) > 1:
            detail = f"{detail} (digest {message.key} of {len(unit.rows)})".strip()
        result.sent += n
        return Outcome(unit, "sent", receipt=detail or "ok"), None

    def _throttled(self, dst: Destination, unit: Unit, exc: Throttled) -> datetime:
        now = self.clock()
        block = exc.retry_after
        if block is None:
            block = max((lim.block_seconds for lim in getattr(dst, "rate_limits", ())), default=0.0) or 60.0
        until = now + timedelta(seconds=block)
        with self.store.begin() as conn:
            self.budgets.block(conn, unit.rows[0].destination, until, str(exc), now)
            n = conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(unit.ids), outbox.c.locked_by == self.worker_id)
                .values(
                    status="failed",
                    attempts=outbox.c.attempts - 1,  # the platform's limit is not the message's fault
                    next_attempt_at=until,
                    last_error=str(exc)[:2000],
                    locked_by=None,
                    locked_until=None,
                    updated_at=now,
                )
            ).rowcount
        metrics.count_outcomes(unit.rows[0].destination, "failed", int(n or 0))
        log.warning("%s: throttled by the platform; blocked until %s", unit.rows[0].destination, until.isoformat())
        return until

    def _retry(self, unit: Unit, error: str, retry_after: float | None) -> Outcome:
        attempts = max(r.attempts for r in unit.rows)
        if attempts >= self.policy.max_attempts:
            return Outcome(unit, "dead", error=f"gave up after {attempts} attempts: {error}")
        return Outcome(
            unit, "failed", error=error, next_at=self.policy.next_attempt(self.clock(), attempts, retry_after)
        )

    def _write_outcomes(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Record ``outcomes`` on the pump's recorder connection (see :meth:`_recorder`).

        Every update is guarded by ``locked_by``: a worker whose lease ran out (another worker has
        the rows now) records nothing. PostgreSQL: one statement for the whole group,
        ``WITH u AS (UPDATE outbox ... FROM (VALUES ...) RETURNING ...), d AS (DELETE the digest
        memberships of sent / dead rows) SELECT id FROM u``. SQLite: one transaction with the
        update executed per row (in-process, no round trips to save).
        """
        now = self.clock()
        data = [(r.id, o.status, *o.values()) for o in outcomes for r in o.unit.rows]
        fixed: dict[str, Any] = {"locked_by": None, "locked_until": None, "updated_at": now}
        if self.store.is_sqlite:
            stmt = (
                update(outbox)
                .where(outbox.c.id == bindparam("b_id"), outbox.c.locked_by == self.worker_id)
                .values(
                    **fixed,
                    status=bindparam("b_status"),
                    receipt=func.coalesce(bindparam("b_receipt", type_=Text()), outbox.c.receipt),
                    last_error=bindparam("b_error", type_=Text()),
                    next_attempt_at=func.coalesce(bindparam("b_next", type_=UTCDateTime()), outbox.c.next_attempt_at),
                    sent_at=func.coalesce(bindparam("b_sent", type_=UTCDateTime()), outbox.c.sent_at),
                )
            )
            params = [
                {
                    "b_id": d[0],
                    "b_status": d[1],
                    "b_receipt": d[2],
                    "b_error": d[3],
                    "b_next": d[4],
                    "b_sent": now if d[1] == "sent" else None,
                }
                for d in data
            ]
            finished = [d[0] for d in data if d[1] in ("sent", "dead")]
            with conn.begin():
                n = int(conn.execute(stmt, params).rowcount or 0)
                if finished:
                    conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(finished)))
            missing = [d[0] for d in data] if n != len(data) else []  # sqlite3 only sums row counts
            if missing:  # which rows is unknown here, but rarely matters: count by re-reading them
                written = set(
                    conn.execute(
                        select(outbox.c.id).where(
                            outbox.c.id.in_(missing), outbox.c.locked_by.is_(None), outbox.c.updated_at == now
                        )
                    ).scalars()
                )
                missing = [i for i in missing if i not in written]
        else:
            # a fixed statement whatever the group's size (the rows travel as arrays): compiled
            # once by SQLAlchemy and prepared once by PostgreSQL, instead of once per group size
            written = set(
                conn.execute(
                    _PG_RECORD,
                    {
                        "ids": [d[0] for d in data],
                        "statuses": [d[1] for d in data],
                        "receipts": [d[2] for d in data],
                        "errors": [d[3] for d in data],
                        "nexts": [d[4] for d in data],
                        "now": now,
                        "worker": self.worker_id,
                    },
                ).scalars()
            )
            missing = [d[0] for d in data if d[0] not in written]
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


#: record a group of outcomes in one statement (PostgreSQL); the digest memberships of rows that
#: are final (sent / dead) go in the same statement, only for rows this worker still held
_PG_RECORD = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:ids AS bigint[]), CAST(:statuses AS varchar[]), CAST(:receipts AS text[]),
            CAST(:errors AS text[]), CAST(:nexts AS timestamptz[])
        ) AS v (id, status, receipt, last_error, next_at)
    ), u AS (
        UPDATE outbox SET
            status = v.status,
            receipt = COALESCE(v.receipt, outbox.receipt),
            last_error = v.last_error,
            next_attempt_at = COALESCE(v.next_at, outbox.next_attempt_at),
            sent_at = CASE WHEN v.status = 'sent' THEN CAST(:now AS timestamptz) ELSE outbox.sent_at END,
            locked_by = NULL,
            locked_until = NULL,
            updated_at = CAST(:now AS timestamptz)
        FROM v
        WHERE outbox.id = v.id AND outbox.locked_by = :worker
        RETURNING outbox.id, outbox.status
    ), d AS (
        DELETE FROM outbox_batches WHERE outbox_id IN (SELECT id FROM u WHERE status IN ('sent', 'dead'))
    )
    SELECT id FROM u
    """
)
_CLAIMED_COLUMNS = (
    outbox.c.id,
    outbox.c.key,
    outbox.c.destination,
    outbox.c.message,
    outbox.c.attempts,
    outbox.c.last_error,
)


def _claimed(row: Any, batch_key: str | None) -> Claimed:
    msg = row.message if isinstance(row.message, dict) else json.loads(row.message)
    return Claimed(row.id, row.key, row.destination, message_from_dict(msg), row.attempts, row.last_error, batch_key)


def _units(rows: list[Claimed]) -> list[Unit]:
    """Rows as send units: members of one stored digest together, the others alone."""
    units: list[Unit] = []
    by_batch: dict[str, Unit] = {}
    for r in rows:
        if r.batch_key:
            if r.batch_key not in by_batch:
                by_batch[r.batch_key] = Unit([], r.batch_key)
                units.append(by_batch[r.batch_key])
            by_batch[r.batch_key].rows.append(r)
        else:
            units.append(Unit([r]))
    return units


class DeliveryService:
    """Runs a :class:`DeliveryWorker` in a thread inside ``cxhub run`` (``start()`` / ``stop()``)."""

    def __init__(self, worker: DeliveryWorker, *, poll_seconds: float = 1.0, metrics_seconds: float = 15.0):
        self.worker = worker
        self.poll_seconds = poll_seconds
        #: how often the backlog gauges are read from the store
        self.metrics_seconds = metrics_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start pumping in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cxhub-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current pump and stop (rows in flight are recorded before it returns)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.worker.close()

    def _loop(self) -> None:
        failures = 0
        next_metrics = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + self.metrics_seconds
                    self.worker.refresh_metrics()
                busy = bool(self.worker.run_once())
                failures = 0
            except Exception:  # the store is down: wait and try again, never die
                failures += 1
                log.exception("delivery pump failed (%d in a row); retrying", failures)
                busy = False
                self._stop.wait(min(60.0, self.poll_seconds * 2**failures))
                continue
            if not busy:
                self._stop.wait(self.poll_seconds)
