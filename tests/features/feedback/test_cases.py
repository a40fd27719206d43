"""Cases on SQLite and PostgreSQL: open / join, routing, the state machine and its audit trail,
the SLA sweep on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kit.cases import ingest as run_hook
from kit.cases import make_config, make_service, review
from sqlalchemy import func, select

from hub.features.feedback.cases import CaseNotFound, CaseService
from hub.features.feedback.config import BusinessHours
from hub.features.feedback.schema import cases
from hub.features.feedback.sla import add_business_time, format_left
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import outbox


def keys(store: Store) -> list[str]:
    with store.connect() as conn:
        return sorted(r[0] for r in conn.execute(select(outbox.c.key)))


def messages(store: Store, step: str) -> dict[str, dict]:  # type: ignore[type-arg]
    with store.connect() as conn:
        rows = conn.execute(select(outbox.c.destination, outbox.c.message, outbox.c.key)).all()
    return {d: m for d, m, k in rows if f":{step}:" in k}


def test_one_star_opens_a_case_and_notifies_the_store(service: CaseService, store: Store, clock: FakeClock) -> None:
    run_hook(service, store, clock, review(rating=1, text="等了四十分钟，服务员态度恶劣，电话13812345678"))
    [case] = service.list()
    assert (case["status"], case["severity"], case["store"]) == ("new", "high", "S001")
    assert case["ack_due_at"] == clock() + timedelta(minutes=10)
    sent = messages(store, "open")
    # store group robot + the on-duty manager (roster: Monday 10:00 Shanghai -> zhang)
    assert set(sent) == {"dt_s001", "dt_work"}
    assert sent["dt_work"]["to"] == ["zhang01"]
    msg = sent["dt_s001"]
    assert msg["title"].startswith("【差评预警·高】徐汇店 ★☆☆☆☆ 1/5")
    body = msg["body"]
    for part in (
        "徐汇店",
        "138****5678",
        "张**（金卡会员）",
        "O-1001 ¥58.00",
        "美团",
        "还剩 10 分钟（11-02 10:10 前）",
    ):
        assert part in body, part
    assert "13812345678" not in body and "张三丰" not in body
    labels = [b["label"] for b in msg["buttons"]]
    assert labels == ["确认受理", "已解决", "不是差评", "查看详情"]
    assert msg["buttons"][0]["url"].startswith(f"https://cx.example.com/cases/{case['id']}/ack?t=")
    assert msg["data"]["card_actions"]["ack"]["cxhub_case"] == case["id"]
    trail = [e["action"] for e in service.get(case["id"])["events"]]
    assert trail == ["opened", "notified"]


@pytest.mark.parametrize(
    ("event", "first_level", "destinations"),
    [
        # high + dairy: the food-safety rule adds the quality team, then (continue) the store
        ({"rating": 1, "category": "乳品"}, ["quality", "s001_group", "s001_duty"], {"wecom_hq", "dt_s001", "dt_work"}),
        ({"rating": 2, "store": "S002"}, ["s002_group"], {"dt_s002"}),
        ({"rating": 2, "store": "S999"}, ["hq_cx"], {"wecom_hq"}),  # unknown store: fallback
        ({"rating": 2, "store": None}, ["hq_cx"], {"wecom_hq"}),
    ],
)
def test_routing(
    service: CaseService,
    store: Store,
    clock: FakeClock,
    event: dict,
    first_level: list[str],
    destinations: set[str],  # type: ignore[type-arg]
) -> None:
    run_hook(service, store, clock, review(**event))
    [case] = service.list()
    assert case["doc"]["levels"][0]["contacts"] == first_level
    assert set(messages(store, "open")) == destinations


def test_ladder_climbs_store_district_region_hq(service: CaseService, store: Store, clock: FakeClock) -> None:
    run_hook(service, store, clock, review(rating=2))
    levels = service.list()[0]["doc"]["levels"]
    assert [lv["label"] for lv in levels] == ["路由: default", "片区 上海片区", "大区 华东大区", "总部 总部"]


def test_roster_night_shift(service: CaseService, store: Store, clock: FakeClock) -> None:
    clock.set(datetime(2026, 11, 2, 14, 30, tzinfo=UTC))  # 22:30 in Shanghai
    run_hook(service, store, clock, review(rating=1))
    assert messages(store, "open")["dt_work"]["to"] == ["night01"]


def test_repeat_from_same_customer_joins_the_open_case(service: CaseService, store: Store, clock: FakeClock) -> None:
    run_hook(service, store, clock, review(rating=2, text="一般"))
    clock.advance(hours=2)
    run_hook(service, store, clock, review(rating=1, text="又来一次，还是很差"))  # same customer, same store
    run_hook(service, store, clock, review(rating=2, customer="cust-2"))  # someone else
    run_hook(service, store, clock, review(rating=2, store="S002"))  # same customer, other store
    rows = service.list()
    assert len(rows) == 3
    first = service.get(min(r["id"] for r in rows))
    assert first["touchpoints"] == 2 and len(first["touchpoint_ids"]) == 2
    assert first["severity"] == "high"  # the worse repeat raised it
    assert [e["action"] for e in first["events"]].count("joined") == 1
    assert any(":update2:" in k for k in keys(store))
    clock.advance(hours=23)  # past the 24 h join window from the first
    run_hook(service, store, clock, review(rating=1))
    assert len(service.list()) == 4


def test_same_touchpoint_twice_opens_one_case(service: CaseService, store: Store, clock: FakeClock) -> None:
    ev = review(rating=1, ext="dup-1")
    run_hook(service, store, clock, ev)
    run_hook(service, store, clock, ev)
    assert len(service.list()) == 1


def test_state_machine_and_audit_trail(service: CaseService, store: Store, clock: FakeClock) -> None:
    run_hook(service, store, clock, review(rating=1))
    cid = service.list()[0]["id"]
    r = service.transition(cid, "close", actor="x", via="cli")
    assert not r.changed and "new" in r.message
    clock.advance(minutes=3)
    r = service.transition(cid, "ack", actor="张店长", via="link")
    assert r.changed and r.case["status"] == "acknowledged" and r.case["acknowledged_by"] == "张店长"
    assert not service.transition(cid, "ack", actor="李", via="card").changed
    service.transition(cid, "resolve", actor="张店长", via="card", note="已电话致歉并退款")
    service.transition(cid, "close", actor="ops", via="cli")
    clock.advance(days=1)
    r = service.transition(cid, "reopen", actor="ops", via="cli")
    assert (
        r.case["status"] == "new" and r.case["round"] == 1 and r.case["ack_due_at"] == clock() + timedelta(minutes=10)
    )
    events = service.get(cid)["events"]
    human = [(e["action"], e["actor"], e["via"]) for e in events if e["action"] not in ("notified", "opened")]
    assert human == [
        ("acknowledged", "张店长", "link"),
        ("resolved", "张店长", "card"),
        ("closed", "ops", "cli"),
        ("reopened", "ops", "cli"),
    ]
    assert [e["note"] for e in events if e["action"] == "resolved"] == ["已电话致歉并退款"]
    assert any(k.startswith(f"case:{cid}:r1:open:") for k in keys(store))  # a fresh notification
    with pytest.raises(CaseNotFound):
        service.transition(999, "ack", actor="x", via="cli")
    with pytest.raises(ValueError, match="unknown case action"):
        service.transition(cid, "delete", actor="x", via="cli")


def test_escalation_timeline_until_acknowledged(service: CaseService, store: Store, clock: FakeClock) -> None:
    t0 = clock()
    run_hook(service, store, clock, review(rating=1))
    cid = service.list()[0]["id"]
    steps = []
    for minute in range(0, 61):
        clock.set(t0 + timedelta(minutes=minute))
        if service.sweep():
            steps.append((minute, service.get(cid)["events"][-1]["action"], service.list()[0]["level"]))
    # warned 2 min before the 10 min target, then one level every 10 min, then reminders every 10 min (max 3)
    assert steps == [
        (8, "warned", 0),
        (10, "escalated", 1),
        (20, "escalated", 2),
        (30, "escalated", 3),
        (40, "reminded", 3),
        (50, "reminded", 3),
        (60, "reminded", 3),
    ]
    esc1 = messages(store, "esc1")
    assert set(esc1) == {"dt_s001", "dt_work"}  # store group + manager + district manager (li) on dt_work
    assert sorted(esc1["dt_work"]["to"]) == ["li01", "zhang01"]
    assert "已升级至 **片区 上海片区**" in esc1["dt_work"]["body"]
    assert "已超时 0 分钟" not in esc1["dt_work"]["body"]
    assert set(messages(store, "esc3")) == {"dt_s001", "dt_work", "feishu_east", "wecom_hq"}
    clock.advance(hours=5)
    assert service.sweep() == 0  # max_reminders reached: quiet


def test_acknowledge_stops_escalation(service: CaseService, store: Store, clock: FakeClock) -> None:
    t0 = clock()
    run_hook(service, store, clock, review(rating=1))
    cid = service.list()[0]["id"]
    clock.set(t0 + timedelta(minutes=9))
    service.sweep()
    service.transition(cid, "ack", actor="张店长", via="link")
    before = keys(store)
    for minute in range(10, 120, 5):
        clock.set(t0 + timedelta(minutes=minute))
        service.sweep()
    assert keys(store) == before
    # the resolve clock still runs: warning at 90% of 24 h, breach notice one level up at 24 h
    clock.set(t0 + timedelta(hours=21, minutes=37))
    service.sweep()
    assert any(":rwarn:" in k for k in keys(store))
    clock.set(t0 + timedelta(hours=24, minutes=1))
    service.sweep()
    assert set(messages(store, "rbreach")) == {"dt_s001", "dt_work"}
    assert service.list()[0]["level"] == 1


def test_sweep_twice_at_the_same_time_sends_nothing_twice(service: CaseService, store: Store, clock: FakeClock) -> None:
    run_hook(service, store, clock, review(rating=1))
    clock.advance(minutes=10)
    service.sweep()
    n = len(keys(store))
    assert service.sweep() == 0
    assert len(keys(store)) == n


def test_downtime_does_not_burst(service: CaseService, store: Store, clock: FakeClock) -> None:
    run_hook(service, store, clock, review(rating=1))
    clock.advance(hours=3)  # the sweeper was down for three hours
    assert service.sweep() == 1  # one step now, the next one interval later
    clock.advance(minutes=10)
    assert service.sweep() == 1


def test_business_hours_shift_the_deadline(store: Store, clock: FakeClock) -> None:
    cfg = make_config(business_hours={"open": "09:00", "close": "22:00"})
    svc = make_service(store, clock, cfg)
    clock.set(datetime(2026, 11, 2, 13, 55, tzinfo=UTC))  # 21:55 Shanghai
    run_hook(svc, store, clock, review(rating=1))
    case = svc.list()[0]
    assert case["ack_due_at"] == datetime(2026, 11, 3, 1, 5, tzinfo=UTC)  # 09:05 next morning


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        (datetime(2026, 11, 2, 2, 0, tzinfo=UTC), 600, datetime(2026, 11, 2, 2, 10, tzinfo=UTC)),  # 10:00, open
        (datetime(2026, 11, 1, 23, 0, tzinfo=UTC), 600, datetime(2026, 11, 2, 1, 10, tzinfo=UTC)),  # 07:00 -> 09:10
        # Friday 21:58 -> Monday 09:08 when closed at weekends
        (datetime(2026, 11, 6, 13, 58, tzinfo=UTC), 600, datetime(2026, 11, 9, 1, 8, tzinfo=UTC)),
    ],
)
def test_add_business_time(start: datetime, seconds: float, expected: datetime) -> None:
    hours = BusinessHours(days=["mon", "tue", "wed", "thu", "fri"], open="09:00", close="22:00")  # type: ignore[arg-type]
    assert add_business_time(start, seconds, hours, "Asia/Shanghai") == expected
    assert add_business_time(start, seconds, None, "Asia/Shanghai") == start + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (600, "还剩 10 分钟"),
        (30, "还剩 不到 1 分钟"),
        (-180, "已超时 3 分钟"),
        (3 * 3600 + 300, "还剩 3 小时 5 分钟"),
        (90000, "还剩 1 天 1 小时"),
    ],
)
def test_format_left(delta: int, text: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert format_left(now + timedelta(seconds=delta), now) == text


def test_case_counts_on_store(service: CaseService, store: Store, clock: FakeClock) -> None:
    for i in range(5):
        run_hook(service, store, clock, review(rating=1, customer=f"c{i}"))
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cases)).scalar() == 5


def test_two_sweepers_at_once_take_each_step_once(pg_store: Store, clock: FakeClock) -> None:
    """Two processes' sweep jobs at the same moment (PostgreSQL, SKIP LOCKED): one escalation each."""
    import threading

    services = [make_service(pg_store, clock) for _ in range(2)]
    for i in range(30):
        run_hook(services[0], pg_store, clock, review(rating=1, customer=f"c{i}"))
    clock.advance(minutes=10)
    barrier = threading.Barrier(2)
    done: list[int] = []

    def sweep(s: CaseService) -> None:
        barrier.wait()
        done.append(s.sweep(limit=5))

    threads = [threading.Thread(target=sweep, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(done) == 30
    from hub.features.feedback.schema import case_events

    with pg_store.connect() as conn:
        n = conn.execute(
            select(func.count()).select_from(case_events).where(case_events.c.action == "escalated")
        ).scalar()
    assert n == 30
