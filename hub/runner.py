"""``cxhub run``: the web server, the scheduler (pull syncs and periodic jobs) and feature services,
in one process that stops cleanly on SIGTERM.

Several processes share one PostgreSQL store:

- **Leadership** (:class:`Leadership`): leader-only jobs (SLA sweeps...) run on the process that
  holds a session advisory lock; every process asks again every :data:`LEADER_HEARTBEAT_SECONDS`
  (the leader's question doubles as its heartbeat), so a killed leader is replaced within one
  heartbeat, and a vanished one (its host lost) within :data:`hub.store.locks.SESSION_LEASE_SECONDS`
  more, when the server's keepalives end its session.
- **Scheduled syncs** keep their next run time in the store (:mod:`hub.store.schedule`): a restart
  runs a missed sync once at once, and a run one process made is not repeated by another.
- **Stopping** (SIGTERM / Ctrl-C, :func:`serve`): the server stops accepting and finishes its
  requests, syncs stop after the batch they are committing, delivery stops claiming and puts back
  what it has not sent, all within ``shutdown_seconds``; past that the process exits anyway and
  leases hand what it still held to another process.
"""

from __future__ import annotations

import inspect
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from hub.errors import CxhubError
from hub.runtime import Runtime
from hub.store import locks
from hub.store import schedule as book

log = logging.getLogger("cxhub.run")

LEADER_LOCK = "cxhub-leader"
#: how often every process asks for leadership (and the leader checks it still holds it)
LEADER_HEARTBEAT_SECONDS = 5.0
#: how long ``cxhub run`` may take to stop after SIGTERM (``--shutdown-seconds``)
DEFAULT_SHUTDOWN_SECONDS = 20.0
#: how long a thread keeps the interpreter while others wait for it (CPython's default: 5 ms). A
#: request's thread gives the interpreter away at each database round trip and waits for it back;
#: behind a thread that computes (an Excel export, a sync's batch) each of those waits was up to
#: 5 ms, and a page of 20 round trips took 100 ms more. At 0.5 ms the console's pages keep their
#: speed beside a download (bench/console.py: routes over 200 ms at p95 went from 13 to 2).
GIL_SWITCH_SECONDS = 0.0005


class Leadership:
    """Which ``cxhub run`` process runs the leader-only jobs (SLA sweeps...).

    On PostgreSQL the leader holds a session advisory lock on a connection of its own
    (:func:`hub.store.locks.lock_session`: server-side keepalives, so that a vanished leader's
    session ends within :data:`~hub.store.locks.SESSION_LEASE_SECONDS`). When the leader dies its
    session ends, the lock is released and the next process to ask (every
    :data:`LEADER_HEARTBEAT_SECONDS`) takes over. On SQLite there is one process: it is always the
    leader.
    """

    def __init__(self, rt: Runtime):
        self.store = rt.store
        self._conn: Connection | None = None
        self._leader = self.store.is_sqlite
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        """Ask (and, for the leader, check that its session still lives): True while this
        process holds the leadership."""
        if self.store.is_sqlite:
            return True
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = locks.lock_session(self.store)
                if self._leader:
                    self._conn.execute(text("SELECT 1"))  # still holding it while the session lives
                else:
                    self._leader = locks.try_advisory_lock(self._conn, LEADER_LOCK)
                    if self._leader:
                        log.info("this process is now the leader")
            except DBAPIError:
                log.warning("lost the store connection; leadership given up until it returns")
                self._drop()
            return self._leader

    def _drop(self) -> None:
        self._leader = False
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None

    def close(self) -> None:
        """Give the leadership up (the lock goes with the session)."""
        with self._lock:
            if self._conn is not None and self._leader:
                locks.advisory_unlock(self._conn, LEADER_LOCK)
            self._drop()


class RunningJobs:
    """Counts the scheduler's jobs in progress, so that stopping can wait for them (bounded)."""

    def __init__(self) -> None:
        self._n = 0
        self._cond = threading.Condition()

    def wrap(self, func: Callable[[], Any]) -> Callable[[], Any]:
        """``func``, counted while it runs."""

        def counted() -> Any:
            with self._cond:
                self._n += 1
            try:
                return func()
            finally:
                with self._cond:
                    self._n -= 1
                    self._cond.notify_all()

        return counted

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs (True), or ``timeout`` seconds (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._n == 0, timeout=max(0.0, timeout))


def sync_trigger(every: float | None, cron: str | None) -> tuple[Any, book.NextTime]:
    """The APScheduler trigger of a source's schedule, and when a run is due next after a run
    (or a start) at a given time."""
    if every:
        step = timedelta(seconds=every)
        return IntervalTrigger(seconds=every), lambda t: t + step
    trigger = CronTrigger.from_crontab(cron or "", timezone="UTC")

    def next_cron(t: datetime) -> datetime:
        # the first cron time strictly after t (a run at 09:00:00 is not due again at 09:00:00)
        found = trigger.get_next_fire_time(None, t + timedelta(microseconds=1))
        assert found is not None  # a crontab always has a next time
        return found

    return trigger, next_cron


def build_scheduler(
    rt: Runtime,
    leadership: Leadership | None = None,
    *,
    stop: threading.Event | None = None,
    running: RunningJobs | None = None,
) -> BackgroundScheduler:
    """One job per scheduled source (never two runs at once, misfires coalesced, next run time in
    the store), the leadership heartbeat, plus feature jobs. ``stop``: set when the process stops
    (a sync then ends after the batch it is committing); ``running`` counts the jobs in progress."""
    from hub.sync import SyncBusy, paused, record_last_run, run_sync

    running = running or RunningJobs()
    sched = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    )
    for name, spec in rt.config.sources.items():
        sch = spec.config.schedule
        if sch is None or not spec.config.enabled:
            continue
        trigger, next_after = sync_trigger(sch.every, sch.cron)
        job_id = f"sync:{name}"

        def job(n: str = name, jid: str = job_id, nxt: book.NextTime = next_after) -> None:
            started = rt.clock()
            outcome: tuple[bool, str] | None = None
            try:
                if (pause := paused(rt.store, n)) is not None:
                    log.info("sync %s: skipped, paused in the console by %s", n, pause.get("by", "?"))
                    return
                if not book.is_due(rt.store, jid, started):
                    log.info("sync %s: skipped, another process ran it already", n)
                    return
                r = run_sync(rt, n, stop=stop)
                log.info("sync %s: %s", n, r.summary())
                outcome = (True, json.dumps(r.summary()))
            except SyncBusy:
                # another process (or a manual `cxhub sync`) is running it: skip this tick
                log.info("sync %s: skipped, another run of it holds the lock", n)
                return
            except CxhubError as exc:  # a known failure (a missing file, a refused login) names its reason
                log.error("sync %s failed: %s; it resumes from its last committed batch next time", n, exc)
                outcome = (False, str(exc))
            except Exception as exc:
                log.exception("sync %s failed; it resumes from its last committed batch next time", n)
                outcome = (False, type(exc).__name__)  # a foreign message may hold a URL with its password
            if outcome is not None:
                try:
                    record_last_run(rt.store, n, at=started, ok=outcome[0], outcome=outcome[1])
                except Exception:
                    log.exception("sync %s: could not store how its run ended", n)
            try:
                book.record_run(rt.store, jid, started_at=started, next_run_at=nxt(started), now=rt.clock())
            except Exception:
                log.exception("sync %s: could not store its next run time", n)

        try:
            first = book.first_run(rt.store, job_id, next_after, rt.clock())
        except Exception:  # the store is briefly unreachable: the schedule's own first time
            log.exception("sync %s: could not read its next run time; one interval from now", name)
            first = next_after(rt.clock())
        sched.add_job(running.wrap(job), trigger, id=job_id, name=f"sync {name}", next_run_time=first)
    leadership = leadership or Leadership(rt)
    if not rt.store.is_sqlite:
        sched.add_job(
            leadership.is_leader,
            IntervalTrigger(seconds=LEADER_HEARTBEAT_SECONDS),
            id="leadership",
            name="leadership heartbeat",
            next_run_time=rt.clock(),
        )
    for pj in rt.jobs:
        func = pj.func
        if pj.leader_only:

            def func(f: Any = pj.func) -> Any:
                return f() if leadership.is_leader() else None

        sched.add_job(running.wrap(func), IntervalTrigger(seconds=pj.seconds), id=f"job:{pj.name}", name=pj.name)
    return sched


def _stop_service(service: Any, timeout: float) -> bool:
    """Stop one service within ``timeout`` where it takes one; True when it stopped cleanly."""
    try:
        if "timeout" in inspect.signature(service.stop).parameters:
            return service.stop(timeout=max(0.1, timeout)) is not False
        service.stop()
        return True
    except Exception:
        log.exception("stopping %s failed", type(service).__name__)
        return False


def serve(
    rt: Runtime,
    *,
    host: str | None = None,
    port: int | None = None,
    shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
    role: str = "all",
) -> bool:
    """Run until SIGTERM / SIGINT (uvicorn handles the signals), then stop within
    ``shutdown_seconds``: the server finishes its requests, the scheduler starts nothing more and
    a sync stops after its current batch, services (delivery) stop taking work and put back what
    they hold. Returns False when something was still running at the deadline (the caller then
    exits anyway; leases hand the rest to another process).

    ``role`` (:data:`hub.transport.ROLES`): ``receiver`` runs the HTTP side only (push hooks,
    pages, health, metrics); ``worker`` the back only (the ``nats`` transport's ingest worker, the
    scheduler, delivery), its HTTP server kept for health and metrics; ``all`` both."""
    from hub.listener import protocol_for
    from hub.transport import ROLES
    from hub.web import create_app

    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")

    server_cfg = rt.config.raw.server
    if host:  # where the server listens decides who may read the operator endpoints (hub.operator)
        server_cfg.host = host
    app = create_app(rt)
    leadership = Leadership(rt)
    stop = threading.Event()
    running = RunningJobs()
    sched = build_scheduler(rt, leadership, stop=stop, running=running)
    services: list[Any] = list(rt.services) if role != "receiver" else []
    if role != "receiver" and rt.config.raw.transport.kind == "nats":
        from hub.transport.nats import IngestWorker

        ingest = IngestWorker(rt)
        services.insert(0, ingest)  # stopped first: it finishes and acks its batch
        app.state.ready_checks["ingest"] = lambda: ingest.connected  # /readyz: pulling from the stream
    if role != "receiver":
        sched.start()
    for s in services:
        s.start()
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler
    # that was installed before it; a handler that only takes note lets the cleanup below run and
    # the process exit 0 instead of dying from the re-raised signal.
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    clean = True
    try:
        config = uvicorn.Config(
            app,
            host=host or server_cfg.host,
            port=port if port is not None else server_cfg.port,
            log_level="warning",
            access_log=False,
            # no handlers of uvicorn's own: its records reach the ones `cxhub` installed, which
            # redact credentials and write the chosen format (text or JSON)
            log_config=None,
            # httptools with the bounds of hub.listener (size and time of a request's head and body)
            http=protocol_for(server_cfg),
            ws="none",  # the hub serves no WebSocket: no upgrade path to bound
            limit_concurrency=server_cfg.max_connections,
            # requests in flight get half of the stopping time; the other half is for the workers
            timeout_graceful_shutdown=max(1, int(shutdown_seconds / 2)),
        )
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        uvicorn.Server(config).run()
    finally:
        deadline = time.monotonic() + shutdown_seconds / 2
        stop.set()  # syncs end after the batch they are committing
        if sched.running:
            sched.shutdown(wait=False)  # nothing new starts
        for s in services:
            clean = _stop_service(s, deadline - time.monotonic()) and clean
        if not running.wait_idle(deadline - time.monotonic()):
            log.warning("scheduled jobs still running after %.0fs; stopping without them", shutdown_seconds)
            clean = False
        leadership.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("cxhub stopped (signals: %s, clean: %s)", received, clean)
    return clean
