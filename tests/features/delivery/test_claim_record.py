"""The worker's fast paths: one-statement claims, group-committed outcomes, pipelined batches,
tokens cached in memory. On SQLite and PostgreSQL unless the path is PostgreSQL's only."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from kit.outbox import Scripted, keyed, msgs, put, rows, worker
from sqlalchemy import insert, select, update

from hub.features.delivery.units import Outcome, Unit
from hub.features.delivery.worker import DeliveryWorker
from hub.outbox.tables import outbox_batches
from hub.sdk.connector import MemoryKeyValueStore
from hub.sdk.testing import FakeClock
from hub.sdk.tokens import TokenCache
from hub.store import Store
from hub.store.schema import outbox


def by_key(store: Store) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in rows(store)}


# ---------------------------------------------------------------------- recording


@pytest.mark.postgres
def test_parallel_sends_group_commit_every_kind_of_outcome(pg_store: Store, clock: FakeClock) -> None:
    dst = Scripted(delay=0.02)
    keys = [f"ok-{i}" for i in range(12)] + [f"busy-{i}" for i in range(4)] + [f"bad-{i}" for i in range(4)]
    put(pg_store, clock, "s", keyed(*keys))
    w = worker(pg_store, clock, {"s": dst}, concurrency=4)
    result = w.run_once()
    w.close()
    assert (result.claimed, result.sent, result.failed, result.dead) == (20, 12, 4, 4)
    assert len(dst.threads) > 1  # really sent in parallel
    got = by_key(pg_store)
    for k, r in got.items():
        assert (
            r["locked_by"] is None and r["locked_until"] is None and r["attempts"] == 1 and r["updated_at"] == clock()
        )
        if k.startswith("ok-"):
            assert (r["status"], r["receipt"], r["sent_at"], r["last_error"]) == ("sent", f"id-{k}", clock(), None)
        elif k.startswith("busy-"):
            assert r["status"] == "failed" and "system busy" in r["last_error"] and r["sent_at"] is None
            assert r["next_attempt_at"] >= clock() + timedelta(seconds=30)  # Retry-After honoured
            assert r["receipt"] is None
        else:
            assert r["status"] == "dead" and "invalid recipient" in r["last_error"]
            assert r["next_attempt_at"] == clock()  # unchanged: dead rows are not scheduled
    assert sum(dst.calls.values()) == 20 and set(dst.calls.values()) == {1}


def _claim_all(store: Store, clock: FakeClock, w: DeliveryWorker) -> list[Any]:
    with store.begin() as conn:
        return w.claims.claim(conn, clock())


def test_outcomes_are_written_only_for_rows_this_worker_still_holds(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    put(store, clock, "s", keyed("a", "b", "c", "d"))
    w = worker(store, clock, {"s": Scripted()}, worker_id="A")
    a, b, c, d = _claim_all(store, clock, w)
    with store.begin() as conn:  # A's lease on d ran out and worker B took it over
        conn.execute(update(outbox).where(outbox.c.id == d.id).values(locked_by="B"))
    clock.advance(seconds=3)
    outcomes = [
        Outcome(Unit([a]), "sent", receipt="r-a"),
        Outcome(Unit([b]), "failed", error="HTTP 503", next_at=clock() + timedelta(seconds=10)),
        Outcome(Unit([c]), "dead", error="invalid recipient"),
        Outcome(Unit([d]), "sent", receipt="r-d"),
    ]
    with caplog.at_level(logging.WARNING, logger="cxhub.delivery"), w.recorder.connection() as conn:
        w.recorder.write(conn, outcomes)
    got = by_key(store)
    assert (got["a"]["status"], got["a"]["receipt"], got["a"]["sent_at"]) == ("sent", "r-a", clock())
    assert (got["b"]["status"], got["b"]["last_error"]) == ("failed", "HTTP 503")
    assert got["b"]["next_attempt_at"] == clock() + timedelta(seconds=10)
    assert (got["c"]["status"], got["c"]["last_error"]) == ("dead", "invalid recipient")
    assert (got["d"]["status"], got["d"]["locked_by"], got["d"]["receipt"]) == ("sending", "B", None)  # B's now
    assert "lease lost" in caplog.text


def test_digest_memberships_go_when_the_digest_is_final_and_stay_when_it_will_be_retried(
    store: Store, clock: FakeClock
) -> None:
    put(store, clock, "s", keyed("a1", "a2", "b1", "b2", "c1", "c2"))
    w = worker(store, clock, {"s": Scripted()})
    claimed = _claim_all(store, clock, w)
    units = [Unit(claimed[i : i + 2], f"digest-{i}") for i in (0, 2, 4)]
    with store.begin() as conn:
        conn.execute(
            insert(outbox_batches), [{"outbox_id": r.id, "batch_key": u.batch_key} for u in units for r in u.rows]
        )
    with w.recorder.connection() as conn:
        w.recorder.write(
            conn,
            [
                Outcome(units[0], "sent", receipt="m1 (digest of 2)"),
                Outcome(units[1], "failed", error="HTTP 500", next_at=clock() + timedelta(seconds=5)),
                Outcome(units[2], "dead", error="bad signature"),
            ],
        )
    with store.connect() as conn:
        left = conn.execute(select(outbox_batches.c.batch_key)).scalars().all()
    assert sorted(left) == ["digest-2", "digest-2"]  # only the failed digest keeps its members
    got = by_key(store)
    assert got["a1"]["receipt"] == got["a2"]["receipt"] == "m1 (digest of 2)"
    assert {got["b1"]["status"], got["b2"]["status"], got["c1"]["status"]} == {"failed", "dead"}


# ---------------------------------------------------------------------- claiming


def test_claim_takes_a_whole_digest_even_when_the_limit_cuts_through_it(store: Store, clock: FakeClock) -> None:
    put(store, clock, "s", keyed("d1", "d2", "d3", "x"))
    ids = {r["key"]: r["id"] for r in rows(store)}
    with store.begin() as conn:
        conn.execute(insert(outbox_batches), [{"outbox_id": ids[k], "batch_key": "dg"} for k in ("d1", "d2", "d3")])
    w = worker(store, clock, {"s": Scripted()}, batch_size=2)
    claimed = _claim_all(store, clock, w)
    assert sorted(c.key for c in claimed) == ["d1", "d2", "d3"]
    assert {c.batch_key for c in claimed} == {"dg"}
    got = by_key(store)
    assert [got[k]["status"] for k in ("d1", "d2", "d3", "x")] == ["sending"] * 3 + ["pending"]
    assert all(got[k]["attempts"] == 1 for k in ("d1", "d2", "d3"))


def test_claim_gives_back_a_digest_another_worker_holds_part_of(store: Store, clock: FakeClock) -> None:
    put(store, clock, "s", keyed("d1", "d2", "d3", "x"))
    ids = {r["key"]: r["id"] for r in rows(store)}
    with store.begin() as conn:
        conn.execute(insert(outbox_batches), [{"outbox_id": ids[k], "batch_key": "dg"} for k in ("d1", "d2", "d3")])
        conn.execute(  # d3 is being sent by B (its lease holds); d1 failed before
            update(outbox)
            .where(outbox.c.id == ids["d3"])
            .values(status="sending", locked_by="B", locked_until=clock() + timedelta(seconds=60))
        )
        conn.execute(update(outbox).where(outbox.c.id == ids["d1"]).values(status="failed", last_error="HTTP 500"))
    w = worker(store, clock, {"s": Scripted()}, batch_size=10, worker_id="A")
    claimed = _claim_all(store, clock, w)
    assert [c.key for c in claimed] == ["x"]
    got = by_key(store)
    assert (got["d1"]["status"], got["d1"]["attempts"], got["d1"]["locked_by"]) == ("failed", 0, None)
    assert (got["d2"]["status"], got["d2"]["attempts"], got["d2"]["locked_by"]) == ("pending", 0, None)
    assert (got["d3"]["status"], got["d3"]["locked_by"]) == ("sending", "B")


def test_claim_order_and_lease(store: Store, clock: FakeClock) -> None:
    put(store, clock, "s", keyed("late"))
    clock.advance(seconds=-10)
    put(store, clock, "s", keyed("early"))
    clock.advance(seconds=10)
    w = worker(store, clock, {"s": Scripted()}, batch_size=1, lease_seconds=90, worker_id="A")
    (c,) = _claim_all(store, clock, w)
    assert c.key == "early" and c.attempts == 1 and c.message.body == "body early"
    r = by_key(store)["early"]
    assert (r["locked_by"], r["locked_until"]) == ("A", clock() + timedelta(seconds=90))


# ---------------------------------------------------------------------- pipelining


@pytest.mark.postgres
@pytest.mark.parametrize(("pump_seconds", "one_batch"), [(30.0, False), (0.0, True)])
def test_a_pump_claims_the_next_batch_while_the_last_sends_are_in_flight(
    pump_seconds: float, one_batch: bool, pg_store: Store, clock: FakeClock
) -> None:
    dst = Scripted()
    put(pg_store, clock, "s", keyed(*(f"ok-{i}" for i in range(100))))
    w = worker(pg_store, clock, {"s": dst}, batch_size=10, concurrency=4, pump_seconds=pump_seconds)
    first = w.run_once()
    if one_batch:
        assert first.claimed == 10
    else:
        assert first.claimed > 10 and first.sent == first.claimed
    w.drain()
    w.close()
    assert dst.calls == Counter({f"ok-{i}": 1 for i in range(100)})
    assert {r["status"] for r in rows(pg_store)} == {"sent"}


def test_a_small_claim_is_one_batch(store: Store, clock: FakeClock) -> None:
    put(store, clock, "s", msgs(3, to=["u"]))
    w = worker(store, clock, {"s": Scripted()}, batch_size=10)
    assert w.run_once().claimed == 3
    assert w.run_once().claimed == 0


# ---------------------------------------------------------------------- tokens


class CountingKV(MemoryKeyValueStore):
    def __init__(self, clock: FakeClock):
        super().__init__(clock)
        self.reads = 0

    def get(self, key: str) -> tuple[str, datetime | None] | None:
        self.reads += 1
        return super().get(key)


def test_tokens_are_kept_in_memory_and_rechecked_in_the_store_now_and_then(clock: FakeClock) -> None:
    kv = CountingKV(clock)
    fetched: list[bool] = []

    def fetch(force: bool) -> tuple[str, float]:
        fetched.append(force)
        return f"tok-{len(fetched)}", 7200

    cache = TokenCache(kv, "p", fetch, clock=clock, recheck_seconds=60)
    assert cache.get() == "tok-1"
    reads = kv.reads
    assert [cache.get() for _ in range(100)] == ["tok-1"] * 100
    assert kv.reads == reads  # no store round trip per send
    kv.put("token:p", "tok-other", clock() + timedelta(seconds=7200))  # another process refreshed it
    clock.advance(seconds=61)
    assert cache.get() == "tok-other" and kv.reads == reads + 1
    # refused: another process had already replaced it in the store -> use that, fetch nothing
    kv.put("token:p", "tok-newer", clock() + timedelta(seconds=7200))
    assert cache.invalidate("tok-other") == "tok-newer" and fetched == [False]
    assert cache.get() == "tok-newer"
    # refused and nobody replaced it: fetch a new one, and use it from memory
    assert cache.invalidate("tok-newer") == "tok-2" and fetched == [False, True]
    assert cache.get() == "tok-2"
    # near expiry the memory copy is not used: refreshed (here: fetched) before it runs out
    clock.advance(seconds=7200 - 299)
    assert cache.get() == "tok-3"


def test_threads_of_one_process_refresh_a_token_once(clock: FakeClock) -> None:
    kv = MemoryKeyValueStore(clock)
    fetched: list[bool] = []
    barrier = threading.Barrier(8)

    def fetch(force: bool) -> tuple[str, float]:
        fetched.append(force)
        threading.Event().wait(0.05)
        return f"tok-{len(fetched)}", 7200

    cache = TokenCache(kv, "p", fetch, clock=clock)
    got: list[str] = []

    def use() -> None:
        barrier.wait()
        got.append(cache.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert fetched == [False] and set(got) == {"tok-1"}
