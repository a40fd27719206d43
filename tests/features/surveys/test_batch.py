"""The rules engine works per batch: decisions inside one batch see each other (caps count the
invitations decided earlier in the same batch) and equal the decisions of one-by-one ingestion."""

from __future__ import annotations

import copy
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kit.surveys import BASE_SURVEYS, checkout, ingest, invitations_of, outbox_of
from sqlalchemy import update

from hub.store.schema import customers

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def sh(when: datetime) -> str:
    return when.astimezone(SH).isoformat()


def cfg(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE_SURVEYS)
    out["quiet_hours"] = None
    out["rules"] = [
        {"name": "pos_survey", "questionnaire": "retail", "when": {"channel": "pos"}, "delay": "30m"},
        {"name": "mp_survey", "questionnaire": "retail", "when": {"channel": "miniprogram"}, "delay": "30m"},
    ]
    for rule in out["rules"]:
        rule.update(changes.pop(rule["name"], {}))
    out.update(changes)
    return out


# each case: config, then the checkouts of ONE batch as (hours after START, member, channel, email?),
# then the expected (decision, reason, channel) per checkout, in order
BATCH_CASES: dict[
    str, tuple[dict[str, Any], list[tuple[float, str, str, bool]], list[tuple[str, str | None, str | None]]]
] = {
    "global cap 1/7d: the second of the batch is capped": (
        cfg(caps=[{"max": 1, "per": "7d"}]),
        [(0, "M1", "pos", False), (1, "M1", "pos", False)],
        [("scheduled", None, "sms"), ("suppressed", "capped_global", None)],
    ),
    "global cap 2/30d across both surveys in one batch": (
        cfg(caps=[{"max": 2, "per": "30d"}]),
        [(0, "M1", "pos", False), (1, "M1", "miniprogram", False), (2, "M1", "pos", False)],
        [("scheduled", None, "sms"), ("scheduled", None, "sms"), ("suppressed", "capped_global", None)],
    ),
    "a survey cap counts only its own survey in the batch": (
        cfg(pos_survey={"caps": [{"max": 1, "per": "30d"}]}),
        [(0, "M1", "pos", False), (1, "M1", "pos", False), (2, "M1", "miniprogram", False)],
        [("scheduled", None, "sms"), ("suppressed", "capped_survey", None), ("scheduled", None, "sms")],
    ),
    "a channel cap moves later ones of the batch to the fallback": (
        cfg(channel_caps={"sms": [{"max": 1, "per": "30d"}]}),
        [(0, "M1", "pos", True), (1, "M1", "pos", True), (2, "M1", "miniprogram", True)],
        [("scheduled", None, "sms"), ("scheduled", None, "email"), ("scheduled", None, "email")],
    ),
    "customers of one batch do not count against each other": (
        cfg(caps=[{"max": 1, "per": "7d"}]),
        [(0, "M1", "pos", False), (0, "M2", "pos", False), (1, "M1", "pos", False), (1, "M2", "pos", False)],
        [
            ("scheduled", None, "sms"),
            ("scheduled", None, "sms"),
            ("suppressed", "capped_global", None),
            ("suppressed", "capped_global", None),
        ],
    ),
    "the window is either side: a later one of the batch counts against an earlier send time": (
        # the first checkout is sent 8 days after START, the second 2 days after: within 7 days
        cfg(caps=[{"max": 1, "per": "7d"}]),
        [(8 * 24, "M1", "pos", False), (2 * 24, "M1", "pos", False), (16 * 24, "M1", "pos", False)],
        [("scheduled", None, "sms"), ("suppressed", "capped_global", None), ("scheduled", None, "sms")],
    ),
}


@pytest.mark.parametrize("case", list(BATCH_CASES))
def test_caps_count_invitations_decided_earlier_in_the_same_batch(
    make_runtime: Any, clock: Any, store: Any, case: str
) -> None:
    """On SQLite and on the real PostgreSQL."""
    config, steps, expected = BATCH_CASES[case]
    clock.set(START)
    rt = make_runtime(config, store=store)
    records = [
        checkout(
            f"R{i}",
            sh(START + timedelta(hours=h)),
            member=m,
            phone=f"1380000000{m[-1]}",
            channel=ch,
            email=f"{m.lower()}@example.com" if email else None,
        )
        for i, (h, m, ch, email) in enumerate(steps)
    ]
    result = ingest(rt, *records)
    assert result.stored == len(records)  # one batch
    by_order = {i["order_id"]: i for i in invitations_of(rt)}
    got = [
        (by_order[f"R{i}"]["decision"], by_order[f"R{i}"]["reason"], by_order[f"R{i}"]["channel"])
        for i in range(len(steps))
    ]
    assert got == expected
    sent = [by_order[f"R{i}"] for i, e in enumerate(expected) if e[0] != "suppressed"]
    assert sorted(m["key"] for m in outbox_of(rt)) == sorted(i["outbox_key"] for i in sent)


def test_a_batch_counts_invitations_of_earlier_batches_too(make_runtime: Any, clock: Any, store: Any) -> None:
    clock.set(START)
    rt = make_runtime(cfg(caps=[{"max": 2, "per": "7d"}]), store=store)
    ingest(rt, checkout("R0", sh(START)))
    ingest(rt, checkout("R1", sh(START + timedelta(hours=1))), checkout("R2", sh(START + timedelta(hours=2))))
    got = {i["order_id"]: (i["decision"], i["reason"]) for i in invitations_of(rt)}
    assert got == {"R0": ("scheduled", None), "R1": ("scheduled", None), "R2": ("suppressed", "capped_global")}
    assert "2 survey invitation(s) within 7d" in next(i["detail"] for i in invitations_of(rt) if i["order_id"] == "R2")


def test_a_transaction_twice_in_one_hook_call_gets_one_invitation(make_runtime: Any, clock: Any) -> None:
    from hub.ingest import IngestContext

    clock.set(START)
    rt = make_runtime(cfg())
    ingest(rt, checkout("R1", sh(START)))
    engine = rt.features["surveys"].engine
    [row] = invitations_of(rt)
    from sqlalchemy import select

    from hub.model import TouchpointEvent
    from hub.store.schema import touchpoints

    with rt.store.connect() as conn:
        ev = TouchpointEvent.model_validate(conn.execute(select(touchpoints.c.doc)).scalar_one())
    with rt.store.begin() as conn:
        conn.execute(invitations_table().delete())
        conn.execute(outbox_table().delete())
        engine(IngestContext(conn, clock(), rt.store), [ev, ev])
    assert [i["id"] for i in invitations_of(rt)] == [row["id"]]
    assert len(outbox_of(rt)) == 1


def invitations_table() -> Any:
    from hub.features.surveys.schema import invitations

    return invitations


def outbox_table() -> Any:
    from hub.store.schema import outbox

    return outbox


def _forget_checkouts(store: Any) -> None:
    """Forget the checkouts and what they caused, keep the customers (their ids pick the sample)."""
    from hub.features.surveys.schema import invitations
    from hub.store.schema import inbox, outbox, touchpoints

    with store.begin() as conn:
        for t in (invitations, outbox, touchpoints, inbox):
            conn.execute(t.delete())


def _random_checkouts(seed: int, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        m = rnd.randrange(6)
        when = START + timedelta(hours=rnd.uniform(-80, 24 * 12))  # some stale, some in the future
        out.append(
            checkout(
                f"R{i:03d}",
                sh(when),
                member=None if m == 5 else f"M{m}",  # M5: anonymous
                phone=None if m in (4, 5) else f"1390000000{m}",  # M4: unreachable
                email=f"m{m}@example.com" if m in (1, 2) else None,
                channel=rnd.choice(["pos", "miniprogram"]),
                store=rnd.choice(["S001", "S009"]),
            )
        )
    return out


def _decisions(rt: Any) -> dict[str, tuple[Any, ...]]:
    return {
        i["order_id"]: (
            i["customer_id"],
            i["rule"],
            i["decision"],
            i["reason"],
            i["detail"],
            i["channel"],
            i["send_at"],
            i["expires_at"],
        )
        for i in invitations_of(rt)
    }


def test_one_batch_decides_exactly_as_one_transaction_per_batch(make_runtime: Any, clock: Any, store: Any) -> None:
    """120 random checkouts of 6 customers (stale, future, anonymous, unreachable, opted out,
    sampled, quiet hours in two zones; global, survey and channel caps): ingested one by one and
    all in one batch, the invitations are the same."""
    config = cfg(
        caps=[{"max": 2, "per": "7d"}, {"max": 4, "per": "30d"}],
        channel_caps={"sms": [{"max": 1, "per": "5d"}]},
        pos_survey={"caps": [{"max": 1, "per": "3d"}], "sample": 0.6},
        mp_survey={"caps": [{"max": 1, "per": "2d"}]},
        quiet_hours={"start": "21:30", "end": "08:30"},
    )
    records = _random_checkouts(seed=7, n=120)
    clock.set(START)
    rt = make_runtime(config, store=store)

    def opt_out_m3() -> None:
        ingest(rt, checkout("SEED", sh(START - timedelta(days=30)), member="M3", phone="13900000003"))
        seeded = _customer_of(rt, "SEED")
        with rt.store.begin() as conn:
            conn.execute(update(customers).where(customers.c.id.in_(seeded)).values(opted_out=True))

    opt_out_m3()
    for r in records:
        ingest(rt, r)
    one_by_one = _decisions(rt)
    del one_by_one["SEED"]
    _forget_checkouts(rt.store)
    ingest(rt, *records)
    batched = _decisions(rt)
    assert batched == one_by_one
    assert len(batched) == len(one_by_one) == len(records)
    reasons = {d[3] for d in batched.values()}
    # the mix really exercised the checks
    assert {"stale", "unreachable", "opted_out", "capped_global", "quiet_hours"} <= reasons, reasons
    # which customers are sampled out depends on their (random) ids, and with it which cap bites
    assert reasons & {"capped_survey", "capped_channel"}, reasons
    assert any(d[5] == "email" for d in batched.values()), "the sms cap moved someone to email"


def _customer_of(rt: Any, order_id: str) -> list[str]:
    return [i["customer_id"] for i in invitations_of(rt) if i["order_id"] == order_id]


def test_plain_callable_exclusions_still_work_and_run_once_per_customer(make_runtime: Any, clock: Any) -> None:
    """A pluggable check without ``many`` is asked once per customer of the batch, after the
    built-in ones, and its reason is recorded."""
    clock.set(START)
    rt = make_runtime(cfg())
    asked: list[str] = []

    class VipOnly:
        reason = "excluded_vip"

        def __call__(self, conn: Any, customer_id: str) -> str | None:
            asked.append(customer_id)
            return "VIPs are surveyed by their account manager" if len(asked) == 1 else None

    rt.features["surveys"].engine.exclusions.append(VipOnly())
    ingest(
        rt,
        checkout("R1", sh(START), member="M1", phone="13800000001"),
        checkout("R2", sh(START), member="M2", phone="13800000002"),
        checkout("R3", sh(START + timedelta(hours=1)), member="M1", phone="13800000001"),
    )
    assert len(asked) == 2 and len(set(asked)) == 2  # once per customer, not per checkout
    vip = asked[0]  # the first customer asked is excluded, the other is not
    reasons = {(i["customer_id"] == vip, i["reason"]) for i in invitations_of(rt)}
    assert reasons == {(True, "excluded_vip"), (False, None)}


def test_outbox_rows_are_what_hub_outbox_enqueue_writes(make_runtime: Any, clock: Any) -> None:
    from hub.outbox import message_from_dict, message_to_dict
    from hub.sdk.connector import OutboundMessage

    clock.set(START)
    rt = make_runtime(cfg())
    ingest(rt, checkout("R1", sh(START)))
    [row] = outbox_of(rt)
    [inv] = invitations_of(rt)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, inv["send_at"])
    assert row["cause"] == f"survey_invitation:{inv['id']}" and row["created_at"] == clock()
    msg = message_from_dict(row["message"])
    assert isinstance(msg, OutboundMessage) and message_to_dict(msg) == {**row["message"], "to": msg.to}
    assert msg.to == ["13812345678"] and "13812345678" not in str(row["message"])  # sealed at rest
    assert message_to_dict(msg) == dataclasses.asdict(msg)  # the fast form is asdict's JSON


def test_open_case_exclusion_in_a_batch_with_a_uuid_column(make_runtime: Any, clock: Any, store: Any) -> None:
    """The open-case check reads a configured table whose customer column may be a real uuid
    (PostgreSQL): one grouped query per batch, only open statuses count."""
    from sqlalchemy import text

    clock.set(START)
    rt = make_runtime(cfg(exclusions={"open_case": {"table": "test_uuid_cases"}}), store=store)
    ingest(
        rt,
        *(
            checkout(f"OLD-{m}", sh(START - timedelta(days=60)), member=m, phone=f"1380000000{m[-1]}")
            for m in ("M1", "M2", "M3")
        ),
    )
    ids = {i["order_id"][4:]: i["customer_id"] for i in invitations_of(rt)}
    kind = "uuid" if rt.store.dialect == "postgresql" else "TEXT"
    with rt.store.begin() as conn:
        conn.execute(text(f"CREATE TABLE test_uuid_cases (id INTEGER PRIMARY KEY, customer_id {kind}, status TEXT)"))
        conn.execute(
            text("INSERT INTO test_uuid_cases VALUES (1, :c, 'new'), (2, :c, 'acknowledged')"), {"c": ids["M1"]}
        )
        conn.execute(text("INSERT INTO test_uuid_cases VALUES (3, :c, 'closed')"), {"c": ids["M2"]})
    try:
        rt.features["surveys"].engine.exclusions[1].recheck_seconds = 0
        ingest(rt, *(checkout(f"R-{m}", sh(START), member=m, phone=f"1380000000{m[-1]}") for m in ("M1", "M2", "M3")))
        got = {i["order_id"]: (i["reason"], i["detail"]) for i in invitations_of(rt) if i["order_id"].startswith("R-")}
        assert got == {
            "R-M1": ("excluded_open_case", "the customer has 2 open case(s) in test_uuid_cases"),
            "R-M2": (None, None),
            "R-M3": (None, None),
        }
    finally:
        with rt.store.begin() as conn:
            conn.execute(text("DROP TABLE test_uuid_cases"))
