"""Short leases renewed by a heartbeat: a live worker keeps its rows, a dead one (``kill -9`` of a
real process) loses them to another process within one lease, and a stopping worker puts back
what it has not sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from kit.fakes import FakePlatform, serve
from kit.outbox import msgs, put, rows, worker
from sqlalchemy import select

from hub.features.delivery.settings import DeliverySettings
from hub.features.delivery.worker import DeliveryService
from hub.outbox import enqueue, leases
from hub.sdk.connector import ConnectorOptions, Destination, OutboundMessage, Receipt, utcnow
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import outbox

ROOT = Path(__file__).resolve().parents[3]


def test_the_default_lease_is_short_and_the_heartbeat_beats_three_times_per_lease() -> None:
    assert DeliverySettings().lease_seconds == 15.0
    w = worker(Store("sqlite://"), FakeClock(), {}, lease_seconds=15)
    assert w.heartbeat.interval == 5.0


def test_a_heartbeat_keeps_a_live_workers_rows_and_a_dead_workers_rows_go_after_one_lease(
    store: Store, clock: FakeClock
) -> None:
    put(store, clock, "app", msgs(3))
    with store.begin() as conn:
        held = leases.claim(
            conn, now=clock(), worker_id="live", lease=timedelta(seconds=15), destinations=["app"], limit=2
        )
        leases.claim(conn, now=clock(), worker_id="dead", lease=timedelta(seconds=15), destinations=["app"], limit=1)
    ids = [r["id"] for r in rows(store)]  # the session's PostgreSQL numbers on from earlier tests
    assert [r.id for r in held] == ids[:2]
    live = worker(store, clock, {}, lease_seconds=15, worker_id="live")
    live.in_flight.update(r.id for r in held)  # the rows of its pump in progress
    for _ in range(4):  # 20 s of heartbeats every 5 s; "dead" beats no more
        clock.advance(seconds=5)
        assert live.heartbeat.beat() == 2
    with store.begin() as conn:
        taken = leases.claim(
            conn, now=clock(), worker_id="other", lease=timedelta(seconds=15), destinations=["app"], limit=10
        )
    assert [r.id for r in taken] == ids[2:]  # the dead worker's row, 20 s after its claim; not the live one's
    got = {r["id"]: (r["locked_by"], r["locked_until"]) for r in rows(store)}
    assert got[ids[0]] == got[ids[1]] == ("live", clock() + timedelta(seconds=15))


def test_a_row_the_pump_left_unrecorded_is_not_renewed_for_ever(store: Store, clock: FakeClock) -> None:
    """A pump that ends without recording a row (its record step failed) leaves the row ``sending``
    and locked by a live worker. The heartbeat renews only the pump in progress, so that row's
    lease runs out and another worker retries it, instead of it staying stuck while the process lives."""
    put(store, clock, "app", msgs(2))
    with store.begin() as conn:
        held = leases.claim(
            conn, now=clock(), worker_id="live", lease=timedelta(seconds=15), destinations=["app"], limit=2
        )
    live = worker(store, clock, {}, lease_seconds=15, worker_id="live")
    live.in_flight.add(held[0].id)  # the pump still holds the first; the second was left behind
    for _ in range(4):
        clock.advance(seconds=5)
        assert live.heartbeat.beat() == 1
    with store.begin() as conn:
        taken = leases.claim(
            conn, now=clock(), worker_id="other", lease=timedelta(seconds=15), destinations=["app"], limit=10
        )
    assert [r.id for r in taken] == [held[1].id]
    live.in_flight.clear()  # the pump ended: nothing is renewed any more
    assert live.heartbeat.beat() == 0


class Gate(Destination):
    """Holds its first send until ``release`` is set; answers every send."""

    kind = "gate"
    title = "test double"

    def __init__(self) -> None:
        super().__init__("gate", ConnectorOptions())
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[str] = []

    def send(self, message: OutboundMessage) -> Receipt:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30)
        self.sent.append(message.key)
        return Receipt(message_id=message.key)


def test_stopping_finishes_the_send_in_flight_and_puts_the_rest_back(sqlite_store: Store, clock: FakeClock) -> None:
    put(sqlite_store, clock, "app", msgs(5))
    gate = Gate()
    service = DeliveryService(worker(sqlite_store, clock, {"app": gate}, lease_seconds=15), poll_seconds=0.05)
    service.start()
    assert gate.entered.wait(30)
    threading.Timer(0.3, gate.release.set).start()  # the platform answers while the service stops
    assert service.stop(timeout=10) is True
    assert gate.sent == ["m-0"]
    got = [(r["status"], r["attempts"], r["locked_by"]) for r in rows(sqlite_store)]
    assert got[0] == ("sent", 1, got[0][2])
    assert got[1:] == [("pending", 0, None)] * 4  # back, no attempt used, for any other worker at once


def test_a_stop_that_times_out_leaves_the_send_in_flight_to_its_lease(sqlite_store: Store, clock: FakeClock) -> None:
    put(sqlite_store, clock, "app", msgs(2))
    gate = Gate()
    service = DeliveryService(worker(sqlite_store, clock, {"app": gate}, lease_seconds=15), poll_seconds=0.05)
    service.start()
    assert gate.entered.wait(30)
    try:
        assert service.stop(timeout=0.3) is False  # the platform still holds m-0
        # m-0 may be on its way to the platform: it is left to its lease, never handed out twice now
        assert rows(sqlite_store)[0]["status"] == "sending"
    finally:
        gate.release.set()


WORKER = textwrap.dedent(
    """
    import sys, time
    from hub.sdk.connector import ConnectorContext
    from hub.features.delivery.worker import DeliveryService, DeliveryWorker
    from hub.registry import get
    from hub.store import Store

    url, base, name = sys.argv[1:4]
    store = Store(url)
    cls = get("feishu_app")
    opts = cls.Options.model_validate({"app_id": "cli_test", "app_secret": "app-secret", "base_url": base, "timeout": 60})
    dst = cls("app", opts, ConnectorContext(kv=store, timeout=60))
    # the defaults of `cxhub run`: a 15 s lease renewed every 5 s
    service = DeliveryService(DeliveryWorker(store, {"app": dst}.__getitem__, ["app"], worker_id=name, concurrency=1), poll_seconds=0.2)
    service.start()
    print("ready", flush=True)
    time.sleep(600)
    """
)


def statuses(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(select(outbox.c.status).order_by(outbox.c.id)).scalars())


@pytest.mark.postgres
def test_a_killed_workers_claims_are_delivered_by_another_process_within_one_lease(
    pg_store: Store, tmp_path: Path
) -> None:
    """Two worker processes with the defaults; the one holding every claim is killed with kill -9
    while the platform holds its first send; the other delivers everything soon after one lease
    (15 s), not after the two minutes the lease used to be. bench/failover.py measures it."""
    fake = FakePlatform(hang_on=1)
    now = utcnow()
    with pg_store.begin() as conn:
        for i in range(10):
            enqueue(
                conn,
                destination="app",
                message=OutboundMessage(key=f"k-{i}", title="t", body=f"{i}", to=["ou_1"]),
                now=now,
            )
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    with serve(fake) as base:
        try:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), pg_store.url, base, "first"], env=env, stdout=subprocess.PIPE
                )
            )
            assert fake.hanging.wait(60), "the first worker never sent"
            assert statuses(pg_store) == ["sending"] * 10  # it holds every row
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), pg_store.url, base, "second"], env=env, stdout=subprocess.PIPE
                )
            )
            assert procs[1].stdout is not None and procs[1].stdout.readline().strip() == b"ready"
            time.sleep(6)  # the first worker's heartbeat renews: the second takes nothing meanwhile
            assert statuses(pg_store) == ["sending"] * 10
            os.kill(procs[0].pid, signal.SIGKILL)
            killed = time.monotonic()
            while statuses(pg_store) != ["sent"] * 10 and time.monotonic() - killed < 60:
                time.sleep(0.1)
            took = time.monotonic() - killed
        finally:
            for p in procs:
                p.kill()
                p.wait(10)
    assert statuses(pg_store) == ["sent"] * 10
    assert fake.keys() == {f"k-{i}": 1 for i in range(10)}  # each shown once (k-0 went twice on the wire)
    assert took < 30, f"took {took:.1f}s"  # a functional bound (lease 15 s + heartbeat + poll); the figure is in bench/


def test_a_message_that_cannot_be_read_is_dead_with_its_reason_and_does_not_stop_the_others(
    store: Store, clock: FakeClock
) -> None:
    """Recipients sealed with a secret key this process does not have (the key changed): the row
    would fail every claim, and the rows behind it with it. It goes dead with the reason, the
    others are claimed, and a retry after the fix makes it due again."""
    import json as _json

    from sqlalchemy import update

    from hub.outbox import retry
    from hub.privacy import Sealer

    put(store, clock, "app", msgs(3))
    before = rows(store)
    first, msg = before[0]["id"], dict(before[0]["message"])
    token = Sealer(b"a key of another deployment").seal(_json.dumps(["13800000000"]))
    unknown = token.replace(token.split(":")[1], "00000000", 1)  # a key id no process here has
    with store.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == first).values(message={**msg, "to": unknown}))
        claimed = leases.claim(
            conn, now=clock(), worker_id="w", lease=timedelta(seconds=15), destinations=["app"], limit=10
        )
    assert [c.id for c in claimed] == [r["id"] for r in before][1:]
    dead = rows(store)[0]
    assert dead["status"] == "dead" and dead["locked_by"] is None
    assert "unreadable message, not sent" in dead["last_error"] and "00000000" in dead["last_error"]
    assert "13800000000" not in dead["last_error"]
    with store.begin() as conn:
        assert retry(conn, now=clock(), dead=True) == 1
    assert rows(store)[0]["status"] == "pending"
