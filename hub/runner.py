"""``cxhub run``: the web server, the scheduler (pull syncs and periodic jobs) and feature services,
in one process that stops cleanly on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from hub.runtime import Runtime

log = logging.getLogger("cxhub.run")

LEADER_LOCK = "cxhub-leader"


class Leadership:
    """Which ``cxhub run`` process runs the leader-only jobs (SLA sweeps...).

    On PostgreSQL the leader holds a session advisory lock on a dedicated connection; when that
    process dies its connection closes, the lock is released and the next process to ask takes
    over. On SQLite there is one process: it is always the leader.
    """

    def __init__(self, rt: Runtime):
        self.store = rt.store
        self._conn: Connection | None = None
        self._leader = self.store.is_sqlite
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        if self.store.is_sqlite:
            return True
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self.store.engine.connect()
                if self._leader:
                    self._conn.execute(text("SELECT 1"))  # still holding it while the session lives
                else:
                    self._leader = self.store.try_lock(self._conn, LEADER_LOCK)
                    if self._leader:
                        log.info("this process is now the leader")
                self._conn.commit()
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
        with self._lock:
            self._drop()


def build_scheduler(rt: Runtime, leadership: Leadership | None = None) -> BackgroundScheduler:
    """One job per scheduled source (never two runs at once, misfires coalesced) plus feature jobs."""
    from hub.sync import SyncBusy, run_sync

    sched = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    )
    for name, spec in rt.config.sources.items():
        sch = spec.config.schedule
        if sch is None or not spec.config.enabled:
            continue
        trigger: Any = IntervalTrigger(seconds=sch.every) if sch.every else CronTrigger.from_crontab(sch.cron or "")

        def job(n: str = name) -> None:
            try:
                r = run_sync(rt, n)
                log.info("sync %s: %s", n, r.summary())
            except SyncBusy:
                # another process (or a manual `cxhub sync`) is running it: skip this tick
                log.info("sync %s: skipped, another run of it holds the lock", n)
            except Exception:
                log.exception("sync %s failed; it resumes from its last committed batch next time", n)

        sched.add_job(job, trigger, id=f"sync:{name}", name=f"sync {name}")
    leadership = leadership or Leadership(rt)
    for pj in rt.jobs:
        func = pj.func
        if pj.leader_only:

            def func(f: Any = pj.func) -> Any:
                return f() if leadership.is_leader() else None

        sched.add_job(func, IntervalTrigger(seconds=pj.seconds), id=f"job:{pj.name}", name=pj.name)
    return sched


def serve(rt: Runtime, *, host: str | None = None, port: int | None = None) -> None:
    """Run until SIGTERM / SIGINT (uvicorn handles the signals), then stop jobs and services."""
    from hub.listener import protocol_for
    from hub.web import create_app

    server_cfg = rt.config.raw.server
    app = create_app(rt)
    leadership = Leadership(rt)
    sched = build_scheduler(rt, leadership)
    services = rt.services
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
        )
        uvicorn.Server(config).run()
    finally:
        sched.shutdown(wait=True)
        for s in services:
            s.stop()
        leadership.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("cxhub stopped (signals: %s)", received)
