"""Two customers merge (one checkout carries the identities of both): their survey history, opt-out
and sampling follow the survivor, the older customer, so caps and opt-outs still hold.

The loops repeat the reproduction with fresh customer ids: the survivor used to be the lowest
random id, so a history left on the absorbed customer escaped in about half of the runs.
"""

from __future__ import annotations

import copy
from typing import Any
from zoneinfo import ZoneInfo

from kit.surveys import BASE_SURVEYS, checkout, ingest, invitations_of
from sqlalchemy import select, update

from hub.features.surveys.schema import SENT_DECISIONS
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import customers, identities, touchpoints

SH = ZoneInfo("Asia/Shanghai")
RUNS = 8


def capped_surveys() -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_SURVEYS)
    cfg["caps"] = [{"max": 1, "per": "7d"}]  # one invitation a week, whatever the survey
    return cfg


def paid(clock: FakeClock) -> str:
    return clock().astimezone(SH).isoformat()


def by_order(rt: Any) -> dict[str, dict[str, Any]]:
    return {i["order_id"]: i for i in invitations_of(rt)}


def customer_rows(rt: Any) -> dict[str, dict[str, Any]]:
    with rt.store.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(customers)).mappings()}


def test_a_weekly_cap_holds_after_a_merge_in_every_run(make_runtime: Any, clock: FakeClock, store: Store) -> None:
    """SMS to a phone-only customer; a member-only customer appears; 2 days later one checkout
    carries both: the cap must suppress it, whichever customer holds the SMS."""
    rt = make_runtime(capped_surveys(), store=store)
    respected = older_survived = 0
    for run in range(RUNS):
        phone, member = f"1390000{run:04d}", f"M-{run}"
        # half the runs: the SMS is on the older customer; the other half: on the younger one
        first, second = (
            (("P", phone, None), ("M", None, member)) if run % 2 else (("M", None, member), ("P", phone, None))
        )
        for tag, ph, mb in (first, second):
            ingest(rt, checkout(f"R{run}-{tag}", paid(clock), member=mb, phone=ph))
            clock.advance(hours=1)
        clock.advance(days=2)
        ingest(rt, checkout(f"R{run}-both", paid(clock), member=member, phone=phone))
        got = by_order(rt)
        assert got[f"R{run}-P"]["decision"] in SENT_DECISIONS  # the SMS (deferred: quiet hours)
        if got[f"R{run}-both"]["reason"] == "capped_global":
            respected += 1
        # every invitation of both customers is the survivor's, and the survivor is the older one
        older, younger = sorted(customer_rows(rt).values(), key=lambda r: r["created_at"])[-2:]  # this run's two
        cids = {got[f"R{run}-{t}"]["customer_id"] for t in ("P", "M", "both")}
        if cids == {older["id"]} and older["merged_into"] is None and younger["merged_into"] == older["id"]:
            older_survived += 1
        clock.advance(days=30)
    print(
        f"weekly cap respected after a merge: {respected} of {RUNS} runs; the older customer survived in {older_survived}"
    )
    assert (respected, older_survived) == (RUNS, RUNS)


def test_an_opt_out_holds_after_a_merge_in_every_run(make_runtime: Any, clock: FakeClock, store: Store) -> None:
    """A customer opts out; a checkout merges them with another customer: never invited again."""
    rt = make_runtime(store=store)
    respected = 0
    for run in range(RUNS):
        phone, member = f"1380000{run:04d}", f"M-{run}"
        first, second = (
            (("P", phone, None), ("M", None, member)) if run % 2 else (("M", None, member), ("P", phone, None))
        )
        for tag, ph, mb in (first, second):
            ingest(rt, checkout(f"R{run}-{tag}", paid(clock), member=mb, phone=ph))
            clock.advance(hours=1)
        # the phone customer opts out (as the survey page does)
        opted = by_order(rt)[f"R{run}-P"]["customer_id"]
        with rt.store.begin() as conn:
            conn.execute(update(customers).where(customers.c.id == opted).values(opted_out=True))
        clock.advance(days=40)
        ingest(rt, checkout(f"R{run}-both", paid(clock), member=member, phone=phone))
        clock.advance(days=40)
        ingest(rt, checkout(f"R{run}-later", paid(clock), member=member, phone=None))
        got = by_order(rt)
        if got[f"R{run}-both"]["reason"] == "opted_out" and got[f"R{run}-later"]["reason"] == "opted_out":
            respected += 1
        clock.advance(days=40)
    print(f"opt-out respected after a merge: {respected} of {RUNS} runs")
    assert respected == RUNS


def test_the_merge_moves_identities_touchpoints_and_invitations(
    make_runtime: Any, clock: FakeClock, store: Store
) -> None:
    cfg = copy.deepcopy(BASE_SURVEYS)
    cfg["rules"][0]["sample"] = 0.5  # sampling decisions are invitations too: they move as well
    rt = make_runtime(cfg, store=store)
    ingest(rt, checkout("A", paid(clock), member="MA", phone=None))
    clock.advance(hours=1)
    ingest(rt, checkout("B", paid(clock), member=None, phone="13700000001"))
    clock.advance(hours=1)
    before = customer_rows(rt)
    older = by_order(rt)["A"]["customer_id"]
    younger = by_order(rt)["B"]["customer_id"]
    assert older != younger and before[older]["created_at"] < before[younger]["created_at"]
    ingest(rt, checkout("AB", paid(clock), member="MA", phone="13700000001"))
    rows = customer_rows(rt)
    assert rows[younger]["merged_into"] == older and rows[older]["merged_into"] is None
    assert {i["customer_id"] for i in invitations_of(rt)} == {older}
    with rt.store.connect() as conn:
        assert set(conn.execute(select(identities.c.customer_id)).scalars()) == {older}
        assert set(conn.execute(select(touchpoints.c.customer_id)).scalars()) == {older}
    # a third customer merged into the survivor later: no chain through the absorbed one
    ingest(rt, checkout("C", paid(clock), member="MC", phone=None))
    clock.advance(hours=1)
    third = by_order(rt)["C"]["customer_id"]
    ingest(rt, checkout("BC", paid(clock), member="MC", phone="13700000001"))
    rows = customer_rows(rt)
    assert rows[third]["merged_into"] == older and rows[younger]["merged_into"] == older
