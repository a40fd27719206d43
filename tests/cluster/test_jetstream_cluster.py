"""The cluster test, short form (``bench/cluster.py faults`` runs the long one): three receivers
and three workers, real ``cxhub run`` processes on one PostgreSQL and one JetStream (a private
nats-server), under a bounded load of signed review pushes that retries like a platform; during
the load a receiver, a worker and the scheduler leader are killed with SIGKILL and NATS restarts.

Then: every push answered 2xx is stored exactly once, every one-star review among them reached its
store's robot in exactly one card, and the outbox holds nothing unsent."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.databases import temporary_postgres_database
from kit.nats import nats_url  # noqa: F401  (the fixture: NATS must run on this machine)

from cluster.jetstream_cluster import (
    STORES,
    Cluster,
    LoadResult,
    PrivateNats,
    cards_by_review,
    cluster,
    run_load,
    store_counts,
)
from commands.demo.fake_dingtalk import FakeDingTalkRobot

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(600)]


@pytest.fixture
def nats(nats_url: str) -> Iterator[PrivateNats]:  # noqa: F811
    """A private JetStream server, so that this test may restart it (``nats_url`` only checks that
    NATS runs on this machine: under CI=true its absence fails the test)."""
    with tempfile.TemporaryDirectory(prefix="cxhub-nats-") as folder:
        server = PrivateNats(Path(folder))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def wait_until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.5)
    return False


def faults(c: Cluster, nats: PrivateNats, load_done: threading.Event, log: list[str]) -> None:
    """Kill -9 a receiver, a worker, then the scheduler leader; restart NATS (while the load runs)."""
    time.sleep(2)
    receiver = c.receivers()[0]
    receiver.kill9()
    log.append(f"killed receiver {receiver.port}")
    time.sleep(2)
    leader = c.leader()
    worker = next(p for p in c.procs if p.role == "worker" and p.alive and p is not leader)
    worker.kill9()
    log.append(f"killed worker {worker.port}")
    time.sleep(2)
    leader = c.leader()
    if leader is not None:
        leader.kill9()
        log.append(f"killed leader {leader.port}")
    time.sleep(1)
    nats.restart(down_seconds=1.0)
    log.append("restarted NATS")


def test_three_receivers_three_workers_kills_and_a_nats_restart_lose_and_double_nothing(
    nats: PrivateNats, tmp_path: Path
) -> None:
    secrets = {f"tok-{s.lower()}": f"SEC-{s.lower()}" for s in STORES}
    with (
        temporary_postgres_database() as pg,
        FakeDingTalkRobot(secrets) as robot,
        cluster(pg, nats.url, robot.base_url, "CLUSTER") as c,
    ):
        robot.limit_per_minute = 100_000  # the hub keeps to DingTalk's 20/min per robot itself
        c.migrate()
        procs = [c.start("receiver") for _ in range(3)] + [c.start("worker") for _ in range(3)]
        c.wait_ready(procs, timeout=240)
        assert wait_until(lambda: c.leader() is not None, 30), "no worker took the scheduler leadership"

        done = threading.Event()
        log: list[str] = []
        killer = threading.Thread(target=faults, args=(c, nats, done, log))
        killer.start()
        result: LoadResult = run_load(lambda: [p.port for p in c.receivers()], n=300, rate=30, deadline_s=90)
        done.set()
        killer.join(60)
        assert len(log) == 4, log

        assert result.gave_up == 0, result
        accepted = {f"rv-{i}" for i in result.accepted}

        def settled() -> bool:
            s = store_counts(pg)
            unsent = {k: v for k, v in s["outbox"].items() if k != "sent"}
            return accepted <= set(s["inbox_ids"]) and not unsent and len(robot.received) >= len(result.negatives)

        wait_until(settled, 90)
        s = store_counts(pg)
        stored = set(s["inbox_ids"])
        assert accepted - stored == set(), "answered 2xx but not stored"
        assert len(s["inbox_ids"]) == len(stored) == s["touchpoints"], "stored twice"
        assert s["outbox"] == {"sent": len(result.negatives)}, s["outbox"]
        cards = cards_by_review(robot)
        assert {i: n for i, n in cards.items() if n != 1} == {}, "a negative notified more than once"
        assert set(cards) == result.negatives, "a negative without its card, or a card without its negative"
        assert robot.rejected == []
