"""Caps across processes: two runtimes (two pools, as two ``cxhub run`` processes would have) on one
real PostgreSQL ingest the same customer at once. The engine takes a transaction-scoped advisory
lock per customer before it reads the caps, so the second waits for the first to commit and sees
its invitation."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kit.surveys import BASE_SURVEYS, checkout, ingest, invitations_of

from hub.store.locks import lock_customers, lock_key

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
HOLD = 0.6  # seconds the first transaction stays open after deciding


def sh(when: datetime) -> str:
    return when.astimezone(SH).isoformat()


def capped_config() -> dict[str, Any]:
    out = copy.deepcopy(BASE_SURVEYS)
    out["quiet_hours"] = None
    out["caps"] = [{"max": 1, "per": "7d"}]
    return out


class Slow:
    """Wraps the surveys hook: after deciding, keep the transaction open a while (a slow commit)."""

    def __init__(self, engine: Any, decided: threading.Event):
        self.engine, self.decided, self.name = engine, decided, engine.name

    def __call__(self, ctx: Any, events: Any) -> None:
        self.engine(ctx, events)
        self.decided.set()
        time.sleep(HOLD)


def _two_runtimes(make_runtime: Any, pg_store: Any) -> tuple[Any, Any]:
    first = make_runtime(capped_config(), store=pg_store)
    second = make_runtime(capped_config(), store=pg_store)
    assert first.store.engine is not second.store.engine  # two pools, as two processes
    return first, second


def _known_customers(rt: Any, members: list[str]) -> None:
    # an old (stale) checkout per member: the customers and their identities exist beforehand, so
    # the racing batches only read them and nothing but the surveys lock orders the two
    ingest(rt, *(checkout(f"OLD-{m}", sh(START - timedelta(days=60)), member=m, phone=_phone(m)) for m in members))


def _phone(member: str) -> str:
    return f"1390000{int(member[1:]):04d}"


def test_a_second_process_waits_for_the_first_and_sees_its_invitation(
    make_runtime: Any, clock: Any, pg_store: Any
) -> None:
    clock.set(START)
    a, b = _two_runtimes(make_runtime, pg_store)
    _known_customers(a, ["M1"])
    decided = threading.Event()
    a.ingestor.hooks = [Slow(h, decided) if h is a.features["surveys"].engine else h for h in a.ingestor.hooks]
    errors: list[BaseException] = []

    def first() -> None:
        try:
            ingest(a, checkout("R1", sh(START), member="M1", phone=_phone("M1")))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    assert decided.wait(30), "the first batch never reached the surveys hook"
    started = time.monotonic()
    ingest(b, checkout("R2", sh(START + timedelta(minutes=5)), member="M1", phone=_phone("M1")))
    waited = time.monotonic() - started
    t.join(30)
    assert not errors, errors
    got = {
        i["order_id"]: (i["decision"], i["reason"]) for i in invitations_of(a) if not i["order_id"].startswith("OLD")
    }
    assert got == {"R1": ("scheduled", None), "R2": ("suppressed", "capped_global")}
    assert waited >= HOLD / 2, f"the second batch did not wait for the first ({waited:.2f}s)"


def test_racing_batches_never_pass_a_cap_and_never_deadlock(make_runtime: Any, clock: Any, pg_store: Any) -> None:
    """Four threads over two runtimes, each a batch of checkouts of the same 12 customers (in
    different orders) at the same moment: each customer gets exactly one invitation in 7 days."""
    clock.set(START)
    a, b = _two_runtimes(make_runtime, pg_store)
    members = [f"M{i}" for i in range(12)]
    _known_customers(a, members)
    gate = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(rt: Any, n: int) -> None:
        order = members if n % 2 == 0 else members[::-1]
        if n >= 2:
            order = order[6:] + order[:6]
        records = [checkout(f"T{n}-{m}", sh(START + timedelta(minutes=n)), member=m, phone=_phone(m)) for m in order]
        try:
            gate.wait(30)
            for i in range(0, len(records), 4):  # three batches each, interleaving with the others
                ingest(rt, *records[i : i + 4])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(rt, n)) for n, rt in enumerate([a, b, a, b])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    invs = [i for i in invitations_of(a) if not i["order_id"].startswith("OLD")]
    assert len(invs) == 4 * len(members)
    sent = Counter(i["customer_id"] for i in invs if i["decision"] == "scheduled")
    assert sorted(sent.values()) == [1] * len(members), sent
    assert Counter(i["reason"] for i in invs) == {None: 12, "capped_global": 36}


def test_lock_keys_are_stable_and_sqlite_needs_none(sqlite_store: Any, pg_store: Any) -> None:
    assert lock_key("c1") == lock_key("c1") != lock_key("c2")
    assert -(2**63) <= lock_key("c1") < 2**63
    with sqlite_store.begin() as conn:
        assert lock_customers(conn, ["c1", "c2"]) == 0  # one writer at a time already
    with pg_store.begin() as conn:
        assert lock_customers(conn, ["c2", "c1", "c1"]) == 2
        from sqlalchemy import text

        held = conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        )
        assert held.scalar_one() == 2
    with pg_store.begin() as conn:  # released at commit
        held = conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        )
        assert held.scalar_one() == 0


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
