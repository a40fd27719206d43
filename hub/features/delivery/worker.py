"""The delivery worker: claim due outbox rows, respect budgets (or digest), send, record.

One pump (:meth:`DeliveryWorker.run_once`):

1. **Claim** and **plan** in one transaction (:mod:`~hub.features.delivery.claim`): due rows are
   leased to this worker (``FOR UPDATE SKIP LOCKED``, :mod:`hub.outbox.leases`); per destination,
   platform blocks and the shared rate budgets decide what goes now, combined into digests when
   the backlog is larger than the budget, and the rest goes back to wait.
2. **Send** each unit outside any transaction (:mod:`~hub.features.delivery.send`): the answer is
   classified as sent, failed (retried with backoff), dead, or throttled.
3. **Record** the outcome guarded by ``locked_by`` (:mod:`~hub.features.delivery.record`), group-
   committed by the pump's own thread when several threads send.
4. **Pipeline**: when a full batch is down to as many queued units as there are threads, the next
   batch is claimed (steps 1-2) and queued behind it, for up to ``pump_seconds``.

:class:`DeliveryService` runs pumps in a thread of ``cxhub run``.

**Leases and heartbeats.** A claim leases its rows for ``lease`` (15 s by default). While the
worker lives, its :class:`Heartbeat` renews the rows of the pump in progress (``in_flight``) every
third of the lease, with one ``UPDATE``: a dead worker (``kill -9``, a lost host) stops renewing,
and another worker claims its rows at most one lease after the last heartbeat. Two missed
heartbeats (a database hiccup of up to ~10 s) still leave the lease standing. A row the pump
ended without recording (its record step failed) is no longer renewed either: it is not stuck
in ``sending`` for as long as the process lives, it is retried after its lease.

**Stopping** (SIGTERM): :meth:`DeliveryWorker.stop_taking_work` ends claiming; units not yet
handed to a platform go back at once (no attempt used); sends in flight finish and are recorded;
:meth:`DeliveryService.stop` then puts back anything still held, within its timeout.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from hub.features.delivery import metrics
from hub.features.delivery.budgets import Budgets
from hub.features.delivery.claim import Batch, Claimer
from hub.features.delivery.record import Recorder
from hub.features.delivery.send import Sender
from hub.features.delivery.units import Outcome, PumpResult, Step, Unit, WorkerSettings
from hub.outbox import leases
from hub.sdk.connector import Clock, Destination, utcnow
from hub.sdk.policy import RetryPolicy
from hub.store import Store

log = logging.getLogger("cxhub.delivery")


def default_worker_id() -> str:
    """``host:pid:random``: unique per worker, readable in ``cxhub outbox``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DeliveryWorker(Step):
    """Claims, plans, sends and records. ``resolve(name)`` returns the destination connector.

    ``destinations``: the names this worker serves (enabled ones in the config); rows for others
    stay pending and show in ``cxhub outbox``. The steps are :attr:`claims`, :attr:`sender` and
    :attr:`recorder`, built from these settings.
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
        lease_seconds: float = 15.0,
        policy: RetryPolicy | None = None,
        budgets: Budgets | None = None,
        concurrency: int = 4,
        pump_seconds: float = 5.0,
    ):
        super().__init__(
            WorkerSettings(
                store=store,
                resolve=resolve,
                destinations=sorted(set(destinations)),
                clock=clock,
                worker_id=worker_id or default_worker_id(),
                batch_size=batch_size,
                lease=timedelta(seconds=lease_seconds),
                policy=policy or RetryPolicy(),
                budgets=budgets or Budgets(),
            )
        )
        # platform calls are I/O: overlap a few; SQLite serialises writers, so one at a time there
        self.concurrency = 1 if store.is_sqlite else max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        #: how long one pump may keep claiming further batches (``stop()`` waits for the pump)
        self.pump_seconds = pump_seconds
        self.claims = Claimer(self.settings)
        self.sender = Sender(self.settings)
        self.recorder = Recorder(self.settings)
        self.heartbeat = Heartbeat(self)
        self._stopping = threading.Event()
        #: ids of the rows the pump in progress claimed: what the heartbeat renews
        self.in_flight: set[int] = set()
        self._flight = threading.Lock()

    def _hold(self, batch: Batch) -> None:
        with self._flight:
            self.in_flight.update(r.id for task in batch.tasks for unit in task for r in unit.rows)

    def held_ids(self) -> list[int]:
        with self._flight:
            return sorted(self.in_flight)

    # ------------------------------------------------------------------ stopping

    def stop_taking_work(self) -> None:
        """Claim nothing more; units of the current pump not yet sent go back unsent (SIGTERM)."""
        self._stopping.set()

    def take_work(self) -> None:
        """Claim again after :meth:`stop_taking_work` (a service started again)."""
        self._stopping.clear()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def release_held(self) -> int:
        """Put back every row this worker still holds, due now, no attempt used; how many."""
        with self.store.begin() as conn:
            return leases.release_held(conn, worker_id=self.worker_id, now=self.clock())

    # ------------------------------------------------------------------ pump

    def run_once(self) -> PumpResult:
        """Claim due rows, send them (or their digests) and record the outcomes.

        With several sending threads, a pump whose claim came back full keeps the threads busy: when
        no more units are queued than there are threads, it claims the next batch while the last
        ones are still in flight (for up to ``pump_seconds``), instead of letting them idle through
        the tail of the batch and the next claim.
        """
        result = PumpResult()
        if not self.destinations or self.stopping:
            return result
        first = self.claims.next_batch(result)
        if first is None:
            return result
        self._hold(first)
        try:
            return self._pump(first, result)
        finally:
            with self._flight:  # recorded, put back, or left to their lease: none is renewed any more
                self.in_flight.clear()

    def _pump(self, first: Batch, result: PumpResult) -> PumpResult:
        blocked: dict[str, datetime] = {}
        lock = threading.Lock()

        def one(unit: Unit, claimed_at: datetime, record: Callable[[Outcome], None]) -> None:
            dest = unit.rows[0].destination
            until = blocked.get(dest)
            if self.stopping:  # shutting down: what has not gone out yet goes back for another worker
                until = self.clock()
            if until is not None:  # throttled earlier in this pump: do not hammer the platform
                self.sender.defer(unit.rows, until)
                with lock:
                    result.deferred += len(unit.rows)
                return
            part = PumpResult()
            outcome, throttled_until = self.sender.deliver(unit, claimed_at, part)
            if outcome is not None:
                record(outcome)
            with lock:
                for f in ("sent", "failed", "dead", "deferred", "calls", "digests"):
                    setattr(result, f, getattr(result, f) + getattr(part, f))
                if throttled_until is not None:
                    blocked[dest] = throttled_until

        if self.concurrency == 1 or len(first.tasks) == 1:
            with self.recorder.connection() as conn:
                for t in first.tasks:
                    for u in t:
                        one(u, first.claimed_at, lambda outcome: self.recorder.write(conn, [outcome]))
        else:
            self._run_parallel(first, one, result)
        return result

    def _run_parallel(
        self,
        first: Batch,
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

        def submit(batch: Batch) -> None:
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
            with self.recorder.connection() as conn:
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
                        self.recorder.write(conn, group)
                    if more and len(futures) - done <= self.concurrency and not self.stopping:
                        nxt = self.claims.next_batch(result) if time.monotonic() < deadline else None
                        more = nxt is not None and nxt.full
                        if nxt is not None:
                            self._hold(nxt)
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

    def close(self, *, wait: bool = True) -> None:
        """Stop the heartbeat and the sending threads (``wait=False``: do not wait for sends in
        flight; the rows they hold go to another worker when their lease ends)."""
        self.heartbeat.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
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


class Heartbeat:
    """Renews the lease of every outbox row a worker holds, every third of the lease, in a daemon
    thread (started with :class:`DeliveryService`, stopped by :meth:`DeliveryWorker.close`). A
    worker pumped by hand (``cxhub outbox flush``, tests) has none: its sender renews a lease
    before a send once half of it has passed.

    A renewal that fails (the store is briefly unreachable) is logged and tried again at the next
    beat: the lease outlives two missed beats."""

    def __init__(self, worker: DeliveryWorker):
        self.worker = worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def interval(self) -> float:
        """Seconds between beats: a third of the lease."""
        return self.worker.lease.total_seconds() / 3

    def start(self) -> None:
        """Start beating (once; later calls do nothing while it runs)."""
        with self._guard:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="cxhub-delivery-heartbeat", daemon=True)
            self._thread.start()

    def beat(self) -> int:
        """Renew the rows of the pump in progress now; returns how many the worker still holds."""
        w = self.worker
        ids = w.held_ids()
        if not ids:
            return 0
        with w.store.begin() as conn:
            return leases.renew_held(conn, worker_id=w.worker_id, lease=w.lease, now=w.clock(), ids=ids)

    def stop(self) -> None:
        """Stop beating (the rows' leases then run out unless they are recorded or released)."""
        with self._guard:
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # the store is unreachable: the lease outlives two missed beats
                log.warning("delivery heartbeat failed (%s); retrying in %.1fs", type(exc).__name__, self.interval)


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
        self.worker.take_work()
        self.worker.heartbeat.start()
        self._thread = threading.Thread(target=self._loop, name="cxhub-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop taking work, let the sends in flight finish and be recorded, put back what is still
        held, and stop, within ``timeout`` seconds. Returns False when sends were still in flight
        after that (their rows go to another worker when their lease ends)."""
        self.worker.stop_taking_work()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        clean = thread is None or not thread.is_alive()
        if clean:
            try:
                released = self.worker.release_held()
                if released:
                    log.info("delivery stopping: put back %d unsent outbox rows", released)
            except Exception as exc:  # the store is gone: the leases run out instead
                log.warning("delivery stopping: could not put back held rows (%s)", type(exc).__name__)
        else:
            log.warning(
                "delivery stopping: sends still in flight after %.0fs; their rows go to another worker "
                "when their lease ends (%.0fs)",
                timeout,
                self.worker.lease.total_seconds(),
            )
        self.worker.close(wait=clean)
        return clean

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
