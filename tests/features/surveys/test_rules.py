"""Survey rules with a fake clock: timing (delay, quiet hours), sampling, caps, exclusions, channels."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kit.surveys import BASE_SURVEYS, checkout, ingest, invitations_of, outbox_of
from sqlalchemy import select, text, update

from hub.features.surveys.config import QuietHours, Rule, SurveysConfig, Trigger
from hub.features.surveys.invitations import invitation_id
from hub.features.surveys.reach import reachable
from hub.features.surveys.rules import matches, sample_bucket, sampled_in
from hub.features.surveys.schedule import defer_quiet_hours, in_quiet_hours
from hub.model import TouchpointEvent
from hub.outbox.messages import recipients
from hub.store.schema import customers, identities

SH = ZoneInfo("Asia/Shanghai")
QUIET = QuietHours(start=time(21, 30), end=time(8, 30))


def sh(text: str) -> datetime:
    """A Shanghai wall-clock time as aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=SH).astimezone(UTC)


def surveys(**changes: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_SURVEYS)
    cfg.update(changes)
    return cfg


# ---------------------------------------------------------------- quiet hours (pure)


@pytest.mark.parametrize(
    ("local", "quiet", "expected"),
    [
        ("2026-11-02 12:00", QUIET, "2026-11-02 12:00"),  # daytime: unchanged
        ("2026-11-02 21:29", QUIET, "2026-11-02 21:29"),  # a minute before: unchanged
        ("2026-11-02 21:30", QUIET, "2026-11-03 08:30"),  # start is inclusive
        ("2026-11-02 23:59", QUIET, "2026-11-03 08:30"),  # before midnight -> tomorrow morning
        ("2026-11-03 00:00", QUIET, "2026-11-03 08:30"),  # after midnight -> this morning
        ("2026-11-03 08:29", QUIET, "2026-11-03 08:30"),
        ("2026-11-03 08:30", QUIET, "2026-11-03 08:30"),  # end is exclusive
        ("2026-12-31 22:00", QUIET, "2027-01-01 08:30"),  # across the year
        ("2026-11-02 12:30", QuietHours(start=time(12), end=time(14)), "2026-11-02 14:00"),  # same-day window
        ("2026-11-02 14:00", QuietHours(start=time(12), end=time(14)), "2026-11-02 14:00"),
    ],
)
def test_quiet_hours_defer_to_the_next_allowed_time(local: str, quiet: QuietHours, expected: str) -> None:
    assert defer_quiet_hours(sh(local), SH, quiet) == sh(expected)


def test_quiet_hours_use_the_store_time_zone() -> None:
    urumqi = ZoneInfo("Asia/Urumqi")  # UTC+6: 22:00 in Shanghai is 20:00 there
    when = sh("2026-11-02 22:00")
    assert in_quiet_hours(when.astimezone(SH), QUIET)
    assert not in_quiet_hours(when.astimezone(urumqi), QUIET)
    assert defer_quiet_hours(when, urumqi, QUIET) == when
    assert defer_quiet_hours(when, SH, QUIET) == sh("2026-11-03 08:30")
    assert defer_quiet_hours(when, SH, None) == when


def test_quiet_hours_config_accepts_unquoted_yaml_times() -> None:
    import yaml

    data = yaml.safe_load("start: 21:30\nend: 08:30")  # YAML 1.1 reads 21:30 as 1290
    q = QuietHours.model_validate(data)
    assert (q.start, q.end) == (time(21, 30), time(8, 30))


# ---------------------------------------------------------------- sampling (pure)


def test_sampling_is_sticky_per_customer_and_near_the_rate() -> None:
    rule = Rule(name="r", questionnaire="retail", sample=0.3)
    people = [f"customer-{i}" for i in range(4000)]
    first = {p for p in people if sampled_in(rule, p)}
    again = {p for p in people if sampled_in(Rule(name="r", questionnaire="retail", sample=0.3), p)}
    assert first == again  # never re-rolled
    assert 0.27 < len(first) / len(people) < 0.33
    # a larger sample keeps everyone of the smaller one (the bucket is fixed, only the bar moves)
    wider = {p for p in people if sampled_in(Rule(name="r", questionnaire="retail", sample=0.5), p)}
    assert first <= wider
    # another rule samples independently
    other = {p for p in people if sampled_in(Rule(name="other", questionnaire="retail", sample=0.3), p)}
    assert other != first
    assert sample_bucket("r", "customer-1") == sample_bucket("r", "customer-1")
    assert all(sampled_in(Rule(name="r", questionnaire="retail", sample=1), p) for p in people[:50])
    assert not any(sampled_in(Rule(name="r", questionnaire="retail", sample=0), p) for p in people[:50])


# ---------------------------------------------------------------- triggers (pure)


def _event(**kw: Any) -> TouchpointEvent:
    doc: dict[str, Any] = {
        "source": kw.pop("source", "pos"),
        "external_id": "x",
        "kind": kw.pop("kind", "transaction"),
        "channel": kw.pop("channel", "pos"),
        "occurred_at": "2026-11-02T02:00:00Z",
        "org": {"store": kw.pop("store", "S001"), "brand": "cxmart", "region": "华东"},
        "order": {
            "amount": kw.pop("amount", "60"),
            "items": [{"category": c, "price": "10"} for c in kw.pop("cats", ["生鲜", "乳制品"])],
        },
        "attributes": kw.pop("attributes", {}),
    }
    return TouchpointEvent.model_validate(doc)


@pytest.mark.parametrize(
    ("trigger", "event", "expected"),
    [
        ({}, {}, True),
        ({}, {"kind": "review"}, False),  # kind defaults to transaction
        ({"kind": ["transaction", "refund"]}, {"kind": "refund"}, True),
        ({"channel": "miniprogram"}, {}, False),
        ({"channel": ["pos", "miniprogram"]}, {}, True),
        ({"source": "pos"}, {}, True),
        ({"source": "erp"}, {}, False),
        ({"store": ["S001", "S002"]}, {}, True),
        ({"store": "S002"}, {}, False),
        ({"brand": "cxmart", "region": "华东"}, {}, True),
        ({"amount": {"min": 20}}, {"amount": "19.99"}, False),
        ({"amount": {"min": 20}}, {"amount": "20"}, True),
        ({"amount": {"min": 20, "max": 500}}, {"amount": "500.01"}, False),
        ({"categories": ["生鲜"]}, {}, True),
        ({"categories": ["电子产品"]}, {}, False),
        ({"categories": {"all": ["生鲜", "乳制品"]}}, {}, True),
        ({"categories": {"all": ["生鲜", "烘焙"]}}, {}, False),
        ({"categories": {"none": ["乳制品"]}}, {}, False),
        ({"categories": {"any": ["生鲜"], "none": ["电子产品"]}}, {}, True),
        ({"attributes": {"payment": ["wechat", "alipay"]}}, {"attributes": {"payment": "alipay"}}, True),
        ({"attributes": {"payment": "wechat"}}, {"attributes": {"payment": "cash"}}, False),
        ({"store_type": "supermarket"}, {}, True),  # S001 is a supermarket below
        ({"store_type": "convenience"}, {}, False),
    ],
)
def test_trigger_matches_any_touchpoint_field(trigger: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(Trigger.model_validate(trigger), _event(**event), store_type="supermarket") is expected


# ---------------------------------------------------------------- through the pipeline


def test_invitation_is_scheduled_after_the_delay_with_category_blocks(make_runtime: Any, clock: Any) -> None:
    clock.set(sh("2026-11-02 10:05"))
    rt = make_runtime()
    ingest(rt, checkout("R1", "2026-11-02T10:00:00+08:00"))
    [inv] = invitations_of(rt)
    assert (inv["decision"], inv["reason"], inv["status"]) == ("scheduled", None, "pending")
    assert inv["send_at"] == sh("2026-11-02 10:30")  # occurred + 30m
    assert inv["expires_at"] == sh("2026-11-05 10:30")
    assert inv["doc"]["blocks"] == ["dairy", "fresh"]  # dairy is the larger share of this basket
    [msg] = outbox_of(rt)
    assert msg["key"] == f"survey:after_checkout:{inv['transaction_id']}"
    assert msg["next_attempt_at"] == inv["send_at"]
    assert msg["destination"] == "sms" and recipients(msg["message"]["to"]) == ["13812345678"]
    assert "13812345678" not in str(msg["message"])  # sealed at rest (hub.outbox.messages)
    assert msg["message"]["url"].startswith("https://cx.example.com/s/")
    assert inv["doc"]["recipient"] == "138****5678"


@pytest.mark.parametrize(
    ("paid", "ingested", "decision", "send_at"),
    [
        ("2026-11-02 10:00", "2026-11-02 10:01", "scheduled", "2026-11-02 10:30"),
        ("2026-11-02 21:10", "2026-11-02 21:11", "deferred", "2026-11-03 08:30"),  # delay lands in quiet hours
        ("2026-11-02 20:59", "2026-11-02 21:00", "scheduled", "2026-11-02 21:29"),  # delay ends just before
        ("2026-11-02 23:50", "2026-11-02 23:55", "deferred", "2026-11-03 08:30"),  # across midnight
        ("2026-11-03 02:00", "2026-11-03 02:00", "deferred", "2026-11-03 08:30"),  # after midnight
        ("2026-11-03 08:10", "2026-11-03 08:11", "scheduled", "2026-11-03 08:40"),
        # ingested late (a pull source syncing an hour later): send now, not in the past
        ("2026-11-02 10:00", "2026-11-02 11:00", "scheduled", "2026-11-02 11:00"),
        # ingested late into quiet hours: still deferred, never dropped
        ("2026-11-02 20:00", "2026-11-02 22:00", "deferred", "2026-11-03 08:30"),
    ],
)
def test_delay_and_quiet_hours_together(
    make_runtime: Any, clock: Any, paid: str, ingested: str, decision: str, send_at: str
) -> None:
    clock.set(sh(ingested))
    rt = make_runtime()
    ingest(rt, checkout("R1", paid.replace(" ", "T") + ":00+08:00"))
    [inv] = invitations_of(rt)
    assert inv["decision"] == decision
    assert inv["send_at"] == sh(send_at)
    assert outbox_of(rt)[0]["next_attempt_at"] == sh(send_at)
    if decision == "deferred":
        assert inv["reason"] == "quiet_hours"
        assert "21:30-08:30" in inv["detail"] and "Asia/Shanghai" in inv["detail"]
        assert inv["expires_at"] == sh(send_at) + timedelta(days=3)


def test_quiet_hours_follow_the_store_time_zone(make_runtime: Any, clock: Any) -> None:
    clock.set(sh("2026-11-02 21:05"))
    rt = make_runtime()
    # 21:00 Shanghai + 30m = 21:30 Shanghai = 19:30 in Urumqi (store S009): quiet in Shanghai only
    ingest(rt, checkout("R9", "2026-11-02T21:00:00+08:00", store="S009"), checkout("R1", "2026-11-02T21:00:00+08:00"))
    by_store = {i["store"]: i for i in invitations_of(rt)}
    assert (by_store["S009"]["decision"], by_store["S009"]["send_at"]) == ("scheduled", sh("2026-11-02 21:30"))
    assert (by_store["S001"]["decision"], by_store["S001"]["send_at"]) == ("deferred", sh("2026-11-03 08:30"))
    assert "21:30 Asia/Shanghai" in by_store["S001"]["detail"]


def two_rules(**extra: Any) -> dict[str, Any]:
    rules = [
        {"name": "pos_survey", "questionnaire": "retail", "when": {"channel": "pos"}, "delay": "30m"},
        {"name": "mp_survey", "questionnaire": "retail", "when": {"channel": "miniprogram"}, "delay": "30m"},
    ]
    for r in rules:
        r.update(extra.pop(r["name"], {}))
    return surveys(rules=rules, quiet_hours=None, **extra)


# each step: (days after the start, channel of the checkout, expected decision, expected reason)
CAP_CASES: dict[str, tuple[dict[str, Any], list[tuple[float, str, str, str | None]]]] = {
    "global cap spans surveys": (
        two_rules(caps=[{"max": 1, "per": "7d"}]),
        [
            (0, "pos", "scheduled", None),
            (2, "miniprogram", "suppressed", "capped_global"),  # another survey, same customer
            (6.9, "pos", "suppressed", "capped_global"),
            (7.1, "miniprogram", "scheduled", None),  # the 7-day window has rolled on
        ],
    ),
    "global cap of 2 per 30 days": (
        two_rules(caps=[{"max": 2, "per": "30d"}]),
        [
            (0, "pos", "scheduled", None),
            (1, "miniprogram", "scheduled", None),
            (2, "pos", "suppressed", "capped_global"),
            (29, "pos", "suppressed", "capped_global"),
            (30.1, "pos", "scheduled", None),  # the first has left the window
        ],
    ),
    "a survey cap leaves other surveys alone": (
        two_rules(pos_survey={"caps": [{"max": 1, "per": "30d"}]}),
        [
            (0, "pos", "scheduled", None),
            (1, "pos", "suppressed", "capped_survey"),
            (1.5, "miniprogram", "scheduled", None),
            (31, "pos", "scheduled", None),
        ],
    ),
    "global and survey caps: the tighter one says why": (
        two_rules(caps=[{"max": 3, "per": "7d"}], mp_survey={"caps": [{"max": 1, "per": "1d"}]}),
        [
            (0, "miniprogram", "scheduled", None),
            (0.5, "miniprogram", "suppressed", "capped_survey"),
            (0.6, "pos", "scheduled", None),
            (1.1, "miniprogram", "scheduled", None),
            (2, "pos", "suppressed", "capped_global"),
        ],
    ),
}


@pytest.mark.parametrize("case", list(CAP_CASES))
def test_frequency_caps(make_runtime: Any, clock: Any, case: str, store: Any) -> None:
    """On SQLite and on the real PostgreSQL."""
    cfg, steps = CAP_CASES[case]
    start = sh("2026-11-02 10:00")
    rt = make_runtime(cfg, store=store)
    for i, (days, channel, decision, reason) in enumerate(steps):
        clock.set(start + timedelta(days=days))
        paid = clock().astimezone(SH).isoformat()
        ingest(rt, checkout(f"R{i}", paid, channel=channel))
        inv = invitations_of(rt)[-1]
        assert (inv["decision"], inv["reason"]) == (decision, reason), f"step {i} ({days}d, {channel}): {inv['detail']}"
        if reason:
            assert inv["detail"], "a suppressed invitation says why"
    assert len(outbox_of(rt)) == sum(1 for s in steps if s[2] != "suppressed")


def test_channel_cap_falls_back_to_the_next_reachable_channel(make_runtime: Any, clock: Any) -> None:
    rt = make_runtime(surveys(quiet_hours=None, channel_caps={"sms": [{"max": 1, "per": "30d"}]}))
    start = sh("2026-11-02 10:00")
    for i in range(3):
        clock.set(start + timedelta(days=i))
        ingest(rt, checkout(f"R{i}", clock().astimezone(SH).isoformat(), email="li.lei@example.com"))
    got = [(i["decision"], i["channel"], i["reason"]) for i in invitations_of(rt)]
    assert got == [("scheduled", "sms", None), ("scheduled", "email", None), ("scheduled", "email", None)]
    assert invitations_of(rt)[1]["doc"]["notes"] == ["sms (1/30d) capped"]
    assert recipients(outbox_of(rt)[1]["message"]["to"]) == ["li.lei@example.com"]
    # only SMS reachable and capped: suppressed with the channel named
    clock.set(start + timedelta(days=5))
    ingest(rt, checkout("R9", clock().astimezone(SH).isoformat(), member="M2", phone="13900000000"))
    ingest(rt, checkout("R10", (clock() + timedelta(hours=1)).astimezone(SH).isoformat(), member="M2", phone=None))
    last = invitations_of(rt)[-1]
    assert (last["decision"], last["reason"]) == ("suppressed", "capped_channel")
    assert "sms (1/30d)" in last["detail"]


def test_one_invitation_per_transaction(make_runtime: Any, clock: Any, store: Any) -> None:
    cfg = surveys(
        rules=[
            {"name": "first", "questionnaire": "retail", "when": {"categories": ["生鲜"]}},
            {"name": "second", "questionnaire": "retail", "when": {"kind": "transaction"}},
        ]
    )
    rt = make_runtime(cfg, store=store)
    record = checkout("R1")
    ingest(rt, record)
    ingest(rt, record)  # a platform retry: dedup stops it before the rules
    [inv] = invitations_of(rt)
    assert inv["rule"] == "first"  # the first matching rule owns the transaction
    # even a hook run on the same event again (a replay) changes nothing
    from hub.ingest import IngestContext
    from hub.store.schema import touchpoints

    with rt.store.connect() as conn:
        doc = conn.execute(select(touchpoints.c.doc)).scalar_one()
    ev = TouchpointEvent.model_validate(doc)
    with rt.store.begin() as conn:
        rt.features["surveys"].engine(IngestContext(conn, clock(), rt.store), [ev])
    assert len(invitations_of(rt)) == 1
    assert len(outbox_of(rt)) == 1
    assert inv["id"] == invitation_id("first", ev.id)


def test_exclusions_and_unreachable_record_why(make_runtime: Any, clock: Any) -> None:
    cfg = surveys(exclusions={"open_case": {"table": "test_stub_cases"}})
    rt = make_runtime(cfg)
    # no stub table yet: the open-case check stays quiet
    ingest(rt, checkout("R1", member="M1"))
    # the customer opts out
    cid = invitations_of(rt)[0]["customer_id"]
    with rt.store.begin() as conn:
        conn.execute(update(customers).where(customers.c.id == cid).values(opted_out=True))
    ingest(rt, checkout("R2", member="M1"))
    # another customer with an open case in a stub cases table of this test
    with rt.store.begin() as conn:
        conn.execute(text("CREATE TABLE test_stub_cases (id INTEGER PRIMARY KEY, customer_id TEXT, status TEXT)"))
    rt.features["surveys"].engine.exclusions[1].recheck_seconds = 0  # look for the table again now
    ingest(rt, checkout("R3", member="M3", phone="13900000003"))
    cid3 = invitations_of(rt)[-1]["customer_id"]
    with rt.store.begin() as conn:
        conn.execute(text("INSERT INTO test_stub_cases VALUES (1, :c, 'new')"), {"c": cid3})
        conn.execute(text("INSERT INTO test_stub_cases VALUES (2, :c, 'closed')"), {"c": cid3})
    clock.advance(days=1)
    ingest(rt, checkout("R4", member="M3", phone="13900000003"))
    with rt.store.begin() as conn:
        conn.execute(text("UPDATE test_stub_cases SET status = 'resolved'"))
    clock.advance(days=1)
    ingest(rt, checkout("R5", member="M3", phone="13900000003"))
    # anonymous checkout; a member with no reachable identity
    ingest(rt, checkout("R6", member=None, phone=None))
    ingest(rt, checkout("R7", member="M7", phone=None))
    got = {i["order_id"]: (i["decision"], i["reason"]) for i in invitations_of(rt)}
    assert got == {
        "R1": ("scheduled", None),
        "R2": ("suppressed", "opted_out"),
        "R3": ("scheduled", None),
        "R4": ("suppressed", "excluded_open_case"),
        "R5": ("scheduled", None),
        "R6": ("suppressed", "unreachable"),
        "R7": ("suppressed", "unreachable"),
    }
    details = {i["order_id"]: i["detail"] for i in invitations_of(rt)}
    assert "1 open case" in details["R4"]
    assert "anonymous" in details["R6"]
    assert "sms (phone)" in details["R7"]


def test_sampling_through_the_pipeline_is_stable(make_runtime: Any, clock: Any) -> None:
    rt = make_runtime(surveys(quiet_hours=None, rules=[{"name": "half", "questionnaire": "retail", "sample": 0.5}]))
    decisions: dict[str, set[str]] = {}
    for day in range(3):
        clock.set(sh("2026-11-02 10:00") + timedelta(days=day))
        recs = [
            checkout(f"D{day}-{m}", clock().astimezone(SH).isoformat(), member=f"M{m}", phone=f"139000000{m:02d}")
            for m in range(30)
        ]
        ingest(rt, *recs)
    for inv in invitations_of(rt):
        decisions.setdefault(inv["customer_id"], set()).add(inv["decision"])
    assert all(len(d) == 1 for d in decisions.values()), "a customer is in or out of the sample for good"
    outs = [i for i in invitations_of(rt) if i["reason"] == "sampled_out"]
    assert 0 < len(outs) < 90 and "50% sample" in outs[0]["detail"]


def test_stale_transactions_are_not_surveyed(make_runtime: Any, clock: Any) -> None:
    clock.set(sh("2026-11-20 10:00"))
    rt = make_runtime()
    ingest(rt, checkout("OLD", "2026-11-02T10:00:00+08:00"))
    [inv] = invitations_of(rt)
    assert (inv["decision"], inv["reason"]) == ("suppressed", "stale")
    assert outbox_of(rt) == []


# ---------------------------------------------------------------- reachability


def _add_identity(rt: Any, cid: str, ns: str, value: str, scope: str = "", contact: str | None = None) -> None:
    from hub.store import insert_ignore

    with rt.store.begin() as conn:
        conn.execute(
            insert_ignore(conn, identities, ["namespace", "scope", "value"]),
            {"namespace": ns, "scope": scope, "value": value, "customer_id": cid, "contact": contact,
             "first_seen": datetime(2026, 1, 1, tzinfo=UTC)},
        )  # fmt: skip


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([("openid", "oOA", "wxoa"), ("openid", "oMP", "wxmp")], ["wechat_template:oOA", "miniprogram:oMP"]),
        ([("openid", "oOther", "wx_some_other_app")], []),  # openids are per app
        ([("openid", "oMP", "wxmp")], ["miniprogram:oMP"]),
        ([("phone", "13811112222", "")], ["sms:13811112222"]),
        ([("email", "A@Example.com", "")], ["email:a@example.com"]),
        ([("member_id", "M1", "")], []),
    ],
)
def test_channel_order_by_reachability(
    make_runtime: Any, clock: Any, ids: list[tuple[str, str, str]], expected: list[str]
) -> None:
    from kit.surveys import SECRET

    from hub.privacy import Vault

    rt = make_runtime()
    vault = Vault(SECRET.encode())
    for ns, value, scope in ids:
        if ns in ("phone", "email"):
            _add_identity(rt, "C1", ns, vault.hash(ns, value), scope, vault.encrypt(ns, value))
        else:
            _add_identity(rt, "C1", ns, value, scope)
    cfg: SurveysConfig = rt.features["surveys"].config
    with rt.store.connect() as conn:
        got = reachable(conn, vault, "C1", cfg.channels)
    assert [f"{r.channel.channel}:{r.to}" for r in got] == expected


def test_rule_channels_restrict_and_reorder(make_runtime: Any, clock: Any) -> None:
    cfg = surveys(rules=[{"name": "r", "questionnaire": "retail", "channels": ["email", "sms"]}], quiet_hours=None)
    rt = make_runtime(cfg)
    ingest(rt, checkout("R1", email="li@example.com"))
    [inv] = invitations_of(rt)
    assert inv["channel"] == "email"
    with rt.store.connect() as conn:
        n = conn.execute(select(identities.c.value).where(identities.c.namespace == "cxhub_customer")).all()
    assert [r[0] for r in n] == [inv["customer_id"]]
