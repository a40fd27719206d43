"""A recovery survey as an action: through the surveys feature's engine, with its quiet hours,
caps, exclusions and "why not sent" reasons recorded on the action."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from kit.surveys import BASE_SURVEYS
from sqlalchemy import select

from hub.features.customers.schema import customer_actions
from hub.sdk.testing import FakeClock

from .conftest import feed, tx
from .test_scoring import regulars


def surveys_section() -> dict[str, Any]:
    s = copy.deepcopy(BASE_SURVEYS)
    s["channels"] = [c for c in s["channels"] if c["channel"] == "sms"]  # reachable by phone
    s["rules"].append(
        {"name": "recovery", "questionnaire": "retail", "when": {"kind": "other"}, "delay": "0s", "enabled": False}
    )
    return s


def make(make_hub: Any, clock: FakeClock, now: datetime, *, feedback_on: bool) -> Any:
    clock.set(now)
    rt = make_hub(
        customers={
            "min_purchases": 2,
            "actions": [
                {"name": "recover", "min_risk": 0.3, "negative_within": "30d", "do": "survey", "survey": "recovery"}
            ],
        },
        surveys=surveys_section(),
        destinations={
            "sms": {
                "connector": "sms",
                "options": {"access_key_id": "ak", "access_key_secret": "sk-0123456789", "sign_name": "cxmart"},
            }
        },
        feedback={"enabled": feedback_on},
    )
    feed(
        rt,
        *regulars(),
        tx("a1", "2026-06-01T10:00:00+08:00", "ALICE", total="300.00", phone="13812345678"),
        tx("a2", "2026-07-01T10:00:00+08:00", "ALICE", total="200.00", phone="13812345678"),
        {
            "id": "a4",
            "kind": "survey_response",
            "at": "2026-11-28T10:00:00+08:00",
            "member": "ALICE",
            "store": "S001",
            "nps": 1,
        },
    )
    return rt


def actions(rt: Any) -> list[dict[str, Any]]:
    with rt.store.connect() as conn:
        return [dict(r) for r in conn.execute(select(customer_actions)).mappings()]


def test_in_quiet_hours_the_survey_is_deferred_with_its_reason(make_hub: Any, clock: FakeClock) -> None:
    rt = make(make_hub, clock, datetime(2026, 12, 1, 14, 0, tzinfo=UTC), feedback_on=False)  # 22:00 in Shanghai
    report = rt.features["customers"].score()
    got = [a for a in actions(rt) if a["rule"] == "recover"]
    assert got and report.actions, report
    assert got[0]["decision"] == "deferred" and got[0]["ref"], got[0]
    from kit.surveys import invitations_of

    inv = next(i for i in invitations_of(rt) if i["id"] == got[0]["ref"])
    assert inv["rule"] == "recovery" and inv["decision"] == "deferred"


def test_an_open_case_suppresses_the_survey_and_says_why(make_hub: Any, clock: FakeClock) -> None:
    rt = make(make_hub, clock, datetime(2026, 12, 1, 4, 0, tzinfo=UTC), feedback_on=True)  # the NPS 1 opened a case
    rt.features["customers"].score()
    got = [a for a in actions(rt) if a["rule"] == "recover"]
    assert got and got[0]["decision"] == "suppressed" and got[0]["reason"], got
