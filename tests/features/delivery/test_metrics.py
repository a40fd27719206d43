"""Delivery metrics: counters per destination and outcome, retries, send latency, backlog gauges,
and their presence on ``GET /metrics`` of ``cxhub run``."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from kit.fakes import FakePlatform
from kit.outbox import Scripted, keyed, put, rows, worker
from prometheus_client import REGISTRY
from sqlalchemy import update

from hub.features.delivery.units import Outcome, Unit
from hub.sdk.connector import OutboundMessage, Receipt
from hub.sdk.policy import Throttled
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import outbox


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Meter:
    """Deltas of the delivery metrics of one destination since creation."""

    NAMES = {
        "sent": ("cxhub_delivery_messages_total", {"outcome": "sent"}),
        "failed": ("cxhub_delivery_messages_total", {"outcome": "failed"}),
        "dead": ("cxhub_delivery_messages_total", {"outcome": "dead"}),
        "retried": ("cxhub_delivery_retries_total", {}),
        "calls": ("cxhub_delivery_send_seconds_count", {}),
    }

    def __init__(self, destination: str):
        self.destination = destination
        self.start = self.now()

    def now(self) -> dict[str, float]:
        return {k: sample(n, destination=self.destination, **extra) for k, (n, extra) in self.NAMES.items()}

    def delta(self) -> dict[str, float]:
        now = self.now()
        return {k: now[k] - self.start[k] for k in now}


def unique(prefix: str) -> str:
    """A destination name of its own: the default registry is shared by every test."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ThrottledOnce(Scripted):
    def send(self, message: OutboundMessage) -> Receipt:
        if message.key.startswith("throttle-"):
            time.sleep(self.delay)  # the platform takes its time to say no
            raise Throttled("app QPM exceeded", code=143103, retry_after=60)
        return super().send(message)


def test_counters_follow_the_recorded_outcomes(store: Store, clock: FakeClock) -> None:
    name = unique("scripted")
    meter = Meter(name)
    put(store, clock, name, keyed(*(f"ok-{i}" for i in range(5)), "busy-1", "busy-2", "bad-1"))
    w = worker(store, clock, {name: Scripted()})
    w.run_once()
    assert meter.delta() == {"sent": 5, "failed": 2, "dead": 1, "retried": 0, "calls": 8}
    clock.advance(seconds=120)  # the busy ones are due again, and fail again: two retries
    w.run_once()
    assert meter.delta() == {"sent": 5, "failed": 4, "dead": 1, "retried": 2, "calls": 10}
    w.close()


def test_throttle_answers_count_as_failed_and_latency_is_observed(store: Store, clock: FakeClock) -> None:
    name = unique("throttled")
    meter = Meter(name)
    put(store, clock, name, keyed("throttle-1"))
    worker(store, clock, {name: ThrottledOnce(delay=0.03)}).run_once()
    assert meter.delta()["failed"] == 1 and meter.delta()["calls"] == 1
    (r,) = [r for r in rows(store) if r["destination"] == name]
    assert r["status"] == "failed" and r["attempts"] == 0
    # the 30 ms call is in the buckets from 0.05 s up, not in 0.025 s
    assert sample("cxhub_delivery_send_seconds_bucket", destination=name, le="0.025") == 0
    assert sample("cxhub_delivery_send_seconds_bucket", destination=name, le="0.05") == 1


def test_a_digest_counts_its_messages_and_lost_leases_count_nothing(store: Store, clock: FakeClock) -> None:
    name = unique("digest")
    meter = Meter(name)
    put(store, clock, name, keyed("a", "b", "c", "d"))
    w = worker(store, clock, {name: Scripted()}, worker_id="A")
    with store.begin() as conn:
        a, b, c, d = w.claims.claim(conn, clock())
        conn.execute(update(outbox).where(outbox.c.id == d.id).values(locked_by="B"))
    with w.recorder.connection() as conn:
        w.recorder.write(
            conn, [Outcome(Unit([a, b, c], "dg"), "sent", receipt="m1"), Outcome(Unit([d]), "dead", error="x")]
        )
    assert meter.delta() == {"sent": 3, "failed": 0, "dead": 0, "retried": 0, "calls": 0}


def test_backlog_gauges_count_open_rows_and_the_oldest_age(store: Store, clock: FakeClock) -> None:
    quiet, busy = unique("quiet"), unique("busy")
    t0 = clock()
    put(store, clock, busy, keyed("ok-1", "busy-1"))
    clock.advance(seconds=30)
    put(store, clock, busy, keyed("bad-1", "ok-2"))
    clock.advance(seconds=10)
    w = worker(store, clock, {busy: Scripted(), quiet: Scripted()})
    found = w.refresh_metrics()
    assert found[busy] == (4, 40.0) and found[quiet] == (0, 0.0)
    assert sample("cxhub_delivery_backlog", destination=busy) == 4
    assert sample("cxhub_delivery_oldest_pending_age_seconds", destination=busy) == 40
    assert sample("cxhub_delivery_backlog", destination=quiet) == 0
    w.run_once()  # ok-1, ok-2 sent, bad-1 dead, busy-1 failed (still open, created at t0)
    clock.advance(seconds=5)
    assert w.refresh_metrics()[busy] == (1, (clock() - t0).total_seconds())
    with store.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.destination == busy).values(status="sent"))
    w2 = worker(store, clock, {quiet: Scripted()})  # no longer serves `busy`: still reset to 0
    assert w2.refresh_metrics()[busy] == (0, 0.0)
    assert sample("cxhub_delivery_backlog", destination=busy) == 0


def test_metrics_endpoint_of_cxhub_run_shows_delivery_metrics(tmp_path: Any, clock: FakeClock) -> None:
    from fastapi.testclient import TestClient
    from kit.runtime import build_runtime

    from hub.features.delivery.worker import DeliveryService
    from hub.web import create_app

    name = unique("staff")
    fake = FakePlatform(clock=clock)
    rt = build_runtime(
        f"""
secret_key: test-secret-key
store: {{url: "sqlite:///{tmp_path}/hub.db"}}
destinations:
  {name}:
    connector: feishu_app
    options: {{app_id: cli_test, app_secret: app-secret, base_url: "http://fake"}}
""",
        transport=httpx.MockTransport(fake.handler),
    )
    (service,) = [s for s in rt.services if isinstance(s, DeliveryService)]
    service.poll_seconds, service.metrics_seconds = 0.02, 0.05
    put(rt.store, clock, name, [OutboundMessage(key=f"k{i}", title="t", body="b", to=["ou_1"]) for i in range(3)])
    service.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            len(fake.accepted) < 3 or sample("cxhub_delivery_backlog", destination=name) != 0
        ):
            time.sleep(0.02)
        with TestClient(create_app(rt)) as client:
            text = client.get("/metrics").text
    finally:
        service.stop()
        rt.close()
    assert f'cxhub_delivery_messages_total{{destination="{name}",outcome="sent"}} 3.0' in text
    assert f'cxhub_delivery_backlog{{destination="{name}"}} 0.0' in text  # refreshed by the loop
    assert f'cxhub_delivery_oldest_pending_age_seconds{{destination="{name}"}}' in text
    assert f'cxhub_delivery_send_seconds_count{{destination="{name}"}} 3.0' in text


@pytest.mark.postgres
def test_parallel_group_commit_counts_every_row_once(pg_store: Store, clock: FakeClock) -> None:
    name = unique("parallel")
    meter = Meter(name)
    put(pg_store, clock, name, keyed(*(f"ok-{i}" for i in range(60)), *(f"bad-{i}" for i in range(5))))
    w = worker(pg_store, clock, {name: Scripted()}, batch_size=20, concurrency=4)
    w.drain()
    w.close()
    assert meter.delta() == {"sent": 60, "failed": 0, "dead": 5, "retried": 0, "calls": 65}
    clock.advance(seconds=1)
    assert w.refresh_metrics()[name] == (0, 0.0)
