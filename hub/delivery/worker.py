"""The delivery worker: claim due outbox rows, respect budgets (or digest), send, record.

One pump (:meth:`DeliveryWorker.run_once`):

1. **Claim** in one transaction: due rows (``pending``/``failed`` whose ``next_attempt_at`` has
   come, or ``sending`` rows whose lease expired because their worker died) are locked with
   ``FOR UPDATE SKIP LOCKED`` (several processes share one PostgreSQL without waiting on each
   other), marked ``sending`` with ``locked_by``/``locked_until`` (the lease) and ``attempts + 1``.
2. **Plan** in the same transaction, per destination: a platform block (DingTalk 130101) puts the
   rows back until it ends; otherwise the shared budget says how many sends are allowed now. When
   the backlog is larger, messages are combined into digests (as few as the body limit allows);
   digest membership is stored, so a digest that fails is retried with the same members and key.
   What still does not fit goes back to ``pending`` until the next slot frees (no attempt used).
3. **Send** each unit outside any transaction, then **record** the outcome guarded by
   ``locked_by`` (a worker that lost its lease records nothing): ``sent`` with the platform
   receipt; ``failed`` with backoff (Retry-After honoured); ``dead`` with the reason for permanent
   errors or after ``max_attempts``.

A crash between send and record leaves the row ``sending``; when the lease expires another worker
sends it again with the **same idempotency key** (passed to the platform where it has one). The
lease is longer than any single send (``lease_seconds`` > connector timeout x 2), and is renewed
before each send once half of it has passed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from hub.connector import Clock, Destination, OutboundMessage, utcnow
from hub.delivery.budgets import Budgets, buckets_for
from hub.delivery.policy import RetryPolicy, Throttled
from hub.delivery.render import digest_key, mask_message, pack_digests, render_digest
from hub.delivery.schema import outbox_batches
from hub.errors import ConnectorError, CxhubError, PermanentError, RetriableError
from hub.outbox import message_from_dict
from hub.store import Store
from hub.store.schema import outbox

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

    # ------------------------------------------------------------------ pump

    def run_once(self) -> PumpResult:
        """Claim due rows, send them (or their digests) and record the outcomes."""
        result = PumpResult()
        if not self.destinations:
            return result
        now = self.clock()
        with self.store.begin() as conn:
            rows = self._claim(conn, now)
            result.claimed = len(rows)
            if not rows:
                return result
            plan = self._plan(conn, rows, now)
        result.deferred = plan.deferred
        claimed_at = now
        blocked: dict[str, datetime] = {}
        lock = threading.Lock()

        def one(unit: Unit) -> None:
            dest = unit.rows[0].destination
            until = blocked.get(dest)
            if until is not None:  # throttled earlier in this pump: do not hammer the platform
                with self.store.begin() as conn:
                    self._release(conn, unit.rows, until)
                with lock:
                    result.deferred += len(unit.rows)
                return
            part = PumpResult()
            throttled_until = self._deliver(unit, claimed_at, part)
            with lock:
                for f in ("sent", "failed", "dead", "deferred", "calls", "digests"):
                    setattr(result, f, getattr(result, f) + getattr(part, f))
                if throttled_until is not None:
                    blocked[dest] = throttled_until

        # a rate-limited destination is sent to in order, so the first throttle answer stops the
        # rest of its units; other destinations' units go out in parallel
        tasks: list[list[Unit]] = []
        serial: dict[str, list[Unit]] = {}
        for unit in plan.units:
            dest = unit.rows[0].destination
            if getattr(self.resolve(dest), "rate_limits", ()):
                if dest not in serial:
                    serial[dest] = []
                    tasks.append(serial[dest])
                serial[dest].append(unit)
            else:
                tasks.append([unit])

        def run(units: list[Unit]) -> None:
            for u in units:
                one(u)

        if self.concurrency == 1 or len(tasks) == 1:
            for t in tasks:
                run(t)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cxhub-send")
            for f in [self._pool.submit(run, t) for t in tasks]:
                f.result()
        return result

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

    def _claim(self, conn: Connection, now: datetime) -> list[Claimed]:
        q = (
            select(outbox.c.id)
            .where(self._due(now), outbox.c.destination.in_(self.destinations))
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True)
        )
        ids = set(conn.execute(q).scalars())
        if not ids:
            return []
        batches: dict[int, str] = dict(
            conn.execute(
                select(outbox_batches.c.outbox_id, outbox_batches.c.batch_key).where(
                    outbox_batches.c.outbox_id.in_(ids)
                )
            ).all()
        )
        if batches:
            ids |= self._complete_batches(conn, now, ids, set(batches.values()), batches)
        if not ids:
            return []
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids))
            .values(
                status="sending",
                locked_by=self.worker_id,
                locked_until=now + self.lease,
                attempts=outbox.c.attempts + 1,
                updated_at=now,
            )
        )
        rows = conn.execute(
            select(
                outbox.c.id,
                outbox.c.key,
                outbox.c.destination,
                outbox.c.message,
                outbox.c.attempts,
                outbox.c.last_error,
            )
            .where(outbox.c.id.in_(ids))
            .order_by(outbox.c.id)
        ).all()
        out = []
        for r in rows:
            msg = r.message if isinstance(r.message, dict) else json.loads(r.message)
            out.append(
                Claimed(r.id, r.key, r.destination, message_from_dict(msg), r.attempts, r.last_error, batches.get(r.id))
            )
        return out

    def _complete_batches(
        self, conn: Connection, now: datetime, ids: set[int], keys: set[str], batches: dict[int, str]
    ) -> set[int]:
        """A digest is sent whole or not at all: lock its missing members too, or give it up."""
        members: dict[str, set[int]] = {}
        for oid, bk in conn.execute(
            select(outbox_batches.c.outbox_id, outbox_batches.c.batch_key).where(outbox_batches.c.batch_key.in_(keys))
        ):
            members.setdefault(bk, set()).add(oid)
        extra: set[int] = set()
        for bk, mids in members.items():
            missing = mids - ids
            if missing:
                got = set(
                    conn.execute(
                        select(outbox.c.id)
                        .where(outbox.c.id.in_(missing), self._due(now))
                        .with_for_update(skip_locked=True)
                    ).scalars()
                )
                if got != missing:  # another worker holds part of it, or it is not due: skip it now
                    ids -= mids
                    continue
                extra |= got
            for m in mids:
                batches[m] = bk
        return extra

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

    def _deliver(self, unit: Unit, claimed_at: datetime, result: PumpResult) -> datetime | None:
        """Send one unit and record the outcome; returns the end of a platform block, if any."""
        if self.clock() - claimed_at > self.lease / 2 and not self._renew(unit):
            log.warning("lease lost on outbox rows %s before sending; another worker has them", unit.ids)
            return None
        name = unit.rows[0].destination
        dst = self.resolve(name)
        if unit.batch_key and len(unit.rows) > 1:
            with self.store.begin() as conn:
                conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(unit.ids)))
                conn.execute(insert(outbox_batches), [{"outbox_id": i, "batch_key": unit.batch_key} for i in unit.ids])
            result.digests += 1
        message = self._message(dst, unit)
        result.calls += 1
        n = len(unit.rows)
        try:
            receipt = dst.send(message)
        except Throttled as exc:
            result.failed += n
            return self._throttled(dst, unit, exc)
        except PermanentError as exc:
            self._record(unit, "dead", error=str(exc))
            result.dead += n
        except Exception as exc:
            if isinstance(exc, RetriableError):
                error, retry_after = str(exc), exc.retry_after
            elif isinstance(exc, ConnectorError):
                error, retry_after = str(exc), None
            else:  # a connector bug must not stop delivery of everything else
                log.exception("destination %s raised unexpectedly; the message is retried", name)
                error, retry_after = f"internal error: {type(exc).__name__}: {exc}", None
            if self._retry(unit, error, retry_after):
                result.dead += n
            else:
                result.failed += n
        else:
            detail = receipt.message_id or receipt.detail or ""
            if len(unit.rows) > 1:
                detail = f"{detail} (digest {message.key} of {len(unit.rows)})".strip()
            self._record(unit, "sent", receipt=detail or "ok")
            result.sent += n
        return None

    def _throttled(self, dst: Destination, unit: Unit, exc: Throttled) -> datetime:
        now = self.clock()
        block = exc.retry_after
        if block is None:
            block = max((lim.block_seconds for lim in getattr(dst, "rate_limits", ())), default=0.0) or 60.0
        until = now + timedelta(seconds=block)
        with self.store.begin() as conn:
            self.budgets.block(conn, unit.rows[0].destination, until, str(exc), now)
            conn.execute(
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
            )
        log.warning("%s: throttled by the platform; blocked until %s", unit.rows[0].destination, until.isoformat())
        return until

    def _retry(self, unit: Unit, error: str, retry_after: float | None) -> bool:
        attempts = max(r.attempts for r in unit.rows)
        if attempts >= self.policy.max_attempts:
            self._record(unit, "dead", error=f"gave up after {attempts} attempts: {error}")
            return True
        self._record(unit, "failed", error=error, next_at=self.policy.next_attempt(self.clock(), attempts, retry_after))
        return False

    def _record(
        self,
        unit: Unit,
        status: str,
        *,
        receipt: str | None = None,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> None:
        now = self.clock()
        values: dict[str, Any] = {"status": status, "locked_by": None, "locked_until": None, "updated_at": now}
        if status == "sent":
            values.update(receipt=(receipt or "")[:2000], sent_at=now, last_error=None)
        else:
            values["last_error"] = (error or "")[:2000]
        if next_at is not None:
            values["next_attempt_at"] = next_at
        with self.store.begin() as conn:
            n = conn.execute(
                update(outbox).where(outbox.c.id.in_(unit.ids), outbox.c.locked_by == self.worker_id).values(**values)
            ).rowcount
            if status in ("sent", "dead") and unit.batch_key:
                conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(unit.ids)))
        if n != len(unit.ids):
            log.warning("outbox rows %s: lease lost before recording %s", unit.ids, status)


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

    def __init__(self, worker: DeliveryWorker, *, poll_seconds: float = 1.0):
        self.worker = worker
        self.poll_seconds = poll_seconds
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
        while not self._stop.is_set():
            try:
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
