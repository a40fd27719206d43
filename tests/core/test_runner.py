"""``cxhub run`` pieces: leader election for leader-only jobs, the leases of session locks (real
processes killed with ``kill -9``), the schedule across restarts, and the shared TLS context."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import delete, text

from hub.runner import Leadership, build_scheduler, sync_trigger
from hub.sdk.connector import ConnectorContext, shared_ssl_context
from hub.sdk.testing import FakeClock
from hub.store import Store, locks, schedule
from hub.sync import SyncBusy, source_lock

ROOT = Path(__file__).resolve().parents[2]


def test_one_leader_among_processes_and_takeover(pg_store: Store) -> None:
    a = Leadership(SimpleNamespace(store=pg_store))  # type: ignore[arg-type]
    b = Leadership(SimpleNamespace(store=Store(pg_store.url)))  # type: ignore[arg-type]
    try:
        assert a.is_leader() is True
        assert b.is_leader() is False
        assert a.is_leader() is True  # keeps it while its session lives
        a.close()  # the leader's process dies: its session and lock go with it
        # PostgreSQL ends the dead session's backend (and frees its lock) a moment after the client
        # hangs up; the scheduler asks again on every tick, so the test asks for a few seconds too
        deadline = time.monotonic() + 5
        while not b.is_leader() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.is_leader() is True
        assert a.is_leader() is False
    finally:
        a.close()
        b.close()


def test_sqlite_is_always_the_leader(sqlite_store: Store) -> None:
    assert Leadership(SimpleNamespace(store=sqlite_store)).is_leader() is True  # type: ignore[arg-type]


def test_connector_clients_share_one_tls_context() -> None:
    ctx = ConnectorContext()
    c1, c2 = ctx.http_client("https://a.example"), ctx.http_client("https://b.example")
    try:
        assert shared_ssl_context() is shared_ssl_context()
        assert c1._transport._pool._ssl_context is c2._transport._pool._ssl_context  # type: ignore[attr-defined]
    finally:
        c1.close()
        c2.close()


# ---------------------------------------------------------------- leases of the session locks

HOLD = """
import sys, time
from types import SimpleNamespace
from hub.runner import Leadership
from hub.store import Store
from hub.sync import source_lock
url, what = sys.argv[1], sys.argv[2]
store = Store(url)
if what == "leader":
    assert Leadership(SimpleNamespace(store=store)).is_leader()
    print("held", flush=True)
    time.sleep(120)
else:
    with source_lock(store, what):
        print("held", flush=True)
        time.sleep(120)
"""


def hold_in_a_process(url: str, what: str) -> subprocess.Popen[str]:
    """A real process that takes the leadership (``leader``) or a source's run lock, then sleeps."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, what],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "held", line + proc.stdout.read()[-1500:]
    return proc


@pytest.mark.postgres
def test_a_killed_leaders_lock_goes_to_the_next_process_that_asks(pg_store: Store) -> None:
    b = Leadership(SimpleNamespace(store=pg_store))  # type: ignore[arg-type]
    holder = hold_in_a_process(pg_store.url, "leader")
    try:
        assert b.is_leader() is False
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        # the scheduler asks every LEADER_HEARTBEAT_SECONDS; the test asks more often
        deadline = time.monotonic() + 10
        while not b.is_leader() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.is_leader() is True
    finally:
        if holder.poll() is None:
            holder.kill()
        b.close()


@pytest.mark.postgres
def test_a_killed_syncs_source_lock_is_free_for_the_next_run(pg_store: Store) -> None:
    holder = hold_in_a_process(pg_store.url, "reviews")
    try:
        with pytest.raises(SyncBusy), source_lock(pg_store, "reviews"):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                with source_lock(pg_store, "reviews"):
                    break
            except SyncBusy:
                assert time.monotonic() < deadline, "the dead process's lock was never released"
                time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_killed_syncs_lock_file_is_free_for_the_next_run(sqlite_store: Store) -> None:
    holder = hold_in_a_process(sqlite_store.url, "reviews")
    try:
        with pytest.raises(SyncBusy, match=f"held by pid {holder.pid}"), source_lock(sqlite_store, "reviews"):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with source_lock(sqlite_store, "reviews"):  # the kernel released the flock with the process
            pass
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.postgres
def test_lock_sessions_end_a_vanished_holder_within_the_session_lease(pg_store: Store) -> None:
    """The server probes a lock holder's connection and ends it (and its locks) when the host is
    gone: keepalives on the server side of every lock session, bounded by SESSION_LEASE_SECONDS."""
    conn = locks.lock_session(pg_store)
    try:
        got = {
            name: conn.execute(text(f"SHOW {name}")).scalar()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout")
        }
    finally:
        conn.close()
    assert got == {
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "4",
        "tcp_user_timeout": "13000",  # milliseconds
    }
    assert locks.SESSION_LEASE_SECONDS == 13


# ---------------------------------------------------------------- the schedule across restarts

DAILY = """
secret_key: test-secret
store: {{url: "{url}"}}
sources:
  reviews:
    connector: jsonl
    mapping: generic_review
    options: {{path: "{feed}", id_path: review_id}}
    schedule: {{every: 1d}}
"""


def _touchpoints(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM touchpoints")).scalar_one())


def test_a_missed_sync_runs_once_at_start_and_its_next_time_survives_restarts(
    store: Store, make_runtime: Any, clock: FakeClock, tmp_path: Path
) -> None:
    """A daily sync on a process restarted more often than daily still runs every day; a process
    that was down for three days runs the sync once when it starts, then daily again."""
    feed = tmp_path / "feed.jsonl"
    line = '{{"review_id": "r{}", "created_at": "2026-11-01 10:00:00", "rating": 5, "content": "好"}}\n'
    feed.write_text(line.format(1), encoding="utf-8")
    config = DAILY.format(url=store.url, feed=feed)
    day = timedelta(days=1)
    t0 = clock()
    with store.begin() as conn:
        conn.execute(delete(schedule.schedule))

    def start() -> Any:
        """A process starting now: its scheduler's sync job (not started; the test runs it by hand)."""
        rt = make_runtime(config, store=store)
        return build_scheduler(rt, Leadership(rt)).get_job("sync:reviews")

    job = start()
    assert job.next_run_time == t0 + day  # never ran: one interval from the first start...
    assert schedule.next_runs(store) == {"sync:reviews": t0 + day}  # ...and remembered at once

    clock.advance(hours=23)  # a restart before it is due keeps the time (it used to start over)
    job = start()
    assert job.next_run_time == t0 + day

    clock.set(t0 + day)
    job.func()
    assert _touchpoints(store) == 1
    assert schedule.next_runs(store) == {"sync:reviews": t0 + 2 * day}

    # down for three days and a bit: at start the sync is due at once, and runs once
    feed.write_text(line.format(1) + line.format(2), encoding="utf-8")
    clock.set(t0 + 5 * day + timedelta(hours=3))
    job = start()
    assert job.next_run_time == clock()
    job.func()
    assert _touchpoints(store) == 2
    assert schedule.next_runs(store) == {"sync:reviews": clock() + day}
    # the three missed runs are one: the timer's next time after it is a whole day later
    assert job.trigger.get_next_fire_time(clock(), clock()) == clock() + day

    # another process whose own timer fires an hour later finds the run made and skips it
    clock.advance(hours=1)
    feed.write_text(line.format(1) + line.format(2) + line.format(3), encoding="utf-8")
    job.func()
    assert _touchpoints(store) == 2
    assert schedule.next_runs(store) == {"sync:reviews": t0 + 6 * day + timedelta(hours=3)}


def test_cron_schedules_keep_their_next_time_too() -> None:
    trigger, next_after = sync_trigger(None, "0 3 * * *")
    at = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert next_after(at) == at + timedelta(days=1)  # a run at 03:00 is due again tomorrow, not now
    assert next_after(at - timedelta(minutes=1)) == at
    assert isinstance(trigger, CronTrigger)


# ---------------------------------------------------------------- /readyz


def test_readyz_says_whether_the_store_is_current_and_the_transport_connected(
    make_runtime: Any, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from hub.web import create_app

    rt = make_runtime({"secret_key": "test-secret", "store": {"url": f"sqlite:///{tmp_path / 'hub.db'}"}})
    app = create_app(rt)
    with TestClient(app) as client:
        ok = client.get("/readyz")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ready", "checks": {"store": "ok", "transport": "ok"}}

        with rt.store.begin() as conn:  # a process started with --no-migrate before `cxhub migrate`
            conn.execute(text("DELETE FROM alembic_version WHERE version_num = '0011_schedule'"))
        behind = client.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["checks"]["store"] == "behind: missing 0011_schedule"
        assert client.get("/healthz").status_code == 200  # alive all the same

        with rt.store.begin() as conn:  # `cxhub migrate` has run
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0011_schedule')"))
        app.state.ready_checks["ingest"] = lambda: False  # a role's piece that is not connected yet
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"] == {"store": "ok", "transport": "ok", "ingest": "not connected"}


def test_a_stopping_process_ends_a_sync_after_the_batch_it_committed(
    sqlite_store: Store, make_runtime: Any, tmp_path: Path
) -> None:
    """SIGTERM during a long sync: the run ends after the batch it is committing (the cursor with
    it), and the next run goes on from there."""
    import threading

    from hub.sync import run_sync

    feed = tmp_path / "feed.jsonl"
    line = '{{"review_id": "r{}", "created_at": "2026-11-01 10:00:00", "rating": 5, "content": "好"}}\n'
    feed.write_text("".join(line.format(i) for i in range(10)), encoding="utf-8")
    config = DAILY.format(url=sqlite_store.url, feed=feed).replace(
        "id_path: review_id", "id_path: review_id, batch_size: 3"
    )
    rt = make_runtime(config, store=sqlite_store)
    stop = threading.Event()
    first = run_sync(rt, "reviews", stop=stop, on_batch=lambda read, total: stop.set() if read else None)
    assert first.read == 3 and _touchpoints(sqlite_store) == 3  # one batch, committed, then it stopped
    rest = run_sync(rt, "reviews")
    assert rest.read == 7 and _touchpoints(sqlite_store) == 10  # resumed after it
