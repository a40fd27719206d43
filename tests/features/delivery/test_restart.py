"""Kill -9 a worker process in the middle of a send; a new process finishes: no loss, no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kit.fakes import FakePlatform, serve
from sqlalchemy import select

from hub.outbox import enqueue
from hub.sdk.connector import OutboundMessage, utcnow
from hub.store import Store
from hub.store.schema import outbox

WORKER = textwrap.dedent(
    """
    import sys, time
    from hub.sdk.connector import ConnectorContext
    from hub.features.delivery.worker import DeliveryWorker
    from hub.registry import get
    from hub.store import Store

    url, base, name, concurrency = sys.argv[1:5]
    store = Store(url)
    cls = get("feishu_app")
    opts = cls.Options.model_validate({"app_id": "cli_test", "app_secret": "app-secret", "base_url": base, "timeout": 60})
    dst = cls("app", opts, ConnectorContext(kv=store, timeout=60))
    w = DeliveryWorker(store, {"app": dst}.__getitem__, ["app"], worker_id=name, lease_seconds=4, concurrency=int(concurrency), batch_size=100)
    print("ready", flush=True)
    while True:
        if not w.run_once():
            time.sleep(0.1)
    """
)


def statuses(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(select(outbox.c.status).order_by(outbox.c.id)).scalars())


@pytest.mark.postgres
def test_kill_9_mid_send_then_restart(pg_store: Store, tmp_path: Path) -> None:
    fake = FakePlatform(hang_on=3)
    now = utcnow()
    with pg_store.begin() as conn:
        for i in range(8):
            msg = OutboundMessage(key=f"r-{i}", title="t", body=f"body {i}", to=["ou_1"])
            enqueue(conn, destination="app", message=msg, now=now)
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with serve(fake) as base:
        first = subprocess.Popen(
            [sys.executable, str(script), pg_store.url, base, "first", "1"], env=env, stdout=subprocess.PIPE
        )
        try:
            assert fake.hanging.wait(60), "the worker never reached the third message"
            os.kill(first.pid, signal.SIGKILL)  # dies while the platform holds message 3
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        after_crash = statuses(pg_store)
        assert after_crash.count("sent") == 2 and after_crash.count("sending") == 6
        second = subprocess.Popen(
            [sys.executable, str(script), pg_store.url, base, "second", "1"], env=env, stdout=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and statuses(pg_store) != ["sent"] * 8:
                time.sleep(0.2)
        finally:
            second.kill()
            second.wait(10)
    assert statuses(pg_store) == ["sent"] * 8
    assert fake.keys() == {f"r-{i}": 1 for i in range(8)}  # each message shown once (uuid dedup)
    assert fake.requests["feishu_app"] == 9  # message 3 was sent twice on the wire, shown once


@pytest.mark.postgres
def test_kill_9_with_parallel_sends_loses_nothing_and_resends_only_the_send_in_flight(
    pg_store: Store, tmp_path: Path
) -> None:
    """Four sending threads, outcomes group-committed: while one send hangs at the platform the
    others are recorded as they finish, so after kill -9 only the hanging one is sent again."""
    fake = FakePlatform(hang_key="p-5")
    now = utcnow()
    with pg_store.begin() as conn:
        for i in range(12):
            msg = OutboundMessage(key=f"p-{i}", title="t", body=f"body {i}", to=["ou_1"])
            enqueue(conn, destination="app", message=msg, now=now)
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with serve(fake) as base:
        first = subprocess.Popen(
            [sys.executable, str(script), pg_store.url, base, "first", "4"], env=env, stdout=subprocess.PIPE
        )
        try:
            assert fake.hanging.wait(60), "the worker never sent p-5"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and statuses(pg_store).count("sent") < 11:
                time.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)  # dies while the platform holds p-5
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        after_crash = statuses(pg_store)
        assert after_crash.count("sent") == 11 and after_crash.count("sending") == 1
        second = subprocess.Popen(
            [sys.executable, str(script), pg_store.url, base, "second", "4"], env=env, stdout=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and statuses(pg_store) != ["sent"] * 12:
                time.sleep(0.2)
        finally:
            second.kill()
            second.wait(10)
    assert statuses(pg_store) == ["sent"] * 12
    assert fake.keys() == {f"p-{i}": 1 for i in range(12)}  # each message shown once (uuid dedup)
    assert fake.requests["feishu_app"] == 13  # only p-5 went twice on the wire
