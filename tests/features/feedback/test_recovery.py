"""The recovery survey after resolution (through the surveys feature) and its answer."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kit.cases import review_record, write_runtime_config
from kit.runtime import build_runtime
from sqlalchemy import select

from hub.errors import ConfigError
from hub.ingest import IngestContext
from hub.model import Customer, EventKind, Feedback, TouchpointEvent
from hub.runtime import Runtime
from hub.sdk.testing import FakeClock
from hub.store.schema import outbox
from hub.sync import run_sync

SURVEYS = """
surveys:
  timezone: Asia/Shanghai
  channels: [{channel: sms, destination: dt_s001, template: SMS_1}]
  questionnaires: {retail: retail}
  rules: [{name: recovery, questionnaire: retail, when: {kind: review}, delay: 1h, enabled: false}]
"""


def make_rt(tmp_path: Path, clock: FakeClock, survey: str = "recovery") -> Runtime:
    path = write_runtime_config(tmp_path, robot="http://127.0.0.1:9")
    text = path.read_text(encoding="utf-8").replace(
        "feedback:\n", f"feedback:\n  recovery_survey: {{enabled: true, survey: {survey}}}\n"
    )
    path.write_text(text + SURVEYS, encoding="utf-8")
    rt = build_runtime(path, clock=clock)
    return rt


def test_resolution_invites_and_the_answer_records_recovery(tmp_path: Path, clock: FakeClock) -> None:
    rt = make_rt(tmp_path, clock)
    try:
        feed = Path(rt.config.sources["reviews"].options.path)  # type: ignore[attr-defined]
        record: dict[str, Any] = {**review_record(1), "mobile": "13812345678"}
        feed.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
        run_sync(rt, "reviews")
        service = rt.features["feedback"]
        cid = service.list()[0]["id"]
        service.transition(cid, "resolve", actor="张店长", via="cli")
        case = service.get(cid)
        [invited] = [e for e in case["events"] if e["action"] == "recovery_survey"]
        assert invited["detail"]["decision"] in ("scheduled", "deferred"), invited["detail"]
        with rt.store.connect() as conn:
            sms = [
                m
                for d, m in conn.execute(select(outbox.c.destination, outbox.c.message))
                if m.get("template") == "SMS_1"
            ]
        assert len(sms) == 1
        answer = TouchpointEvent(
            source="survey_page",
            external_id="resp-1",
            kind=EventKind.survey_response,
            occurred_at=datetime(2026, 11, 3, tzinfo=clock().tzinfo),
            customer=Customer(customer_id=case["customer_id"]),
            feedback=Feedback(nps=9, text="处理得很及时，谢谢"),
            attributes={"invitation_id": invited["detail"]["id"]},
        )
        with rt.store.begin() as conn:
            service(IngestContext(conn=conn, now=clock(), store=rt.store), [answer])
        case = service.get(cid)
        assert case["recovered"] is True
        assert case["events"][-1]["action"] == "recovered" and case["events"][-1]["via"] == "survey"
        assert len(service.list()) == 1  # the answer opened no case
    finally:
        rt.close()


def test_recovery_survey_must_name_a_survey_rule(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="no survey rule 'nope'"):
        make_rt(tmp_path, clock, survey="nope")


def test_resolve_takes_the_customer_lock_before_the_case_row(
    tmp_path: Path, clock: FakeClock, pg_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest holds the customer's survey lock and then locks case rows; a resolve (which may invite
    to a recovery survey) must take the same locks in the same order, or the two deadlock."""
    import threading

    from sqlalchemy import text

    from hub.features.feedback.schema import cases
    from hub.store.locks import lock_customers

    monkeypatch.setenv("CXHUB_STORE_URL", pg_store.url)
    rt = make_rt(tmp_path, clock)
    try:
        feed = Path(rt.config.sources["reviews"].options.path)  # type: ignore[attr-defined]
        feed.write_text(json.dumps({**review_record(1), "mobile": "13812345678"}, ensure_ascii=False) + "\n")
        run_sync(rt, "reviews")
        service = rt.features["feedback"]
        case = service.list()[0]
        with rt.store.engine.connect() as batch:  # an ingest batch in progress for this customer
            batch.begin()
            lock_customers(batch, [case["customer_id"]])
            resolver = threading.Thread(
                target=service.transition, args=(case["id"], "resolve"), kwargs={"actor": "a", "via": "cli"}
            )
            resolver.start()
            resolver.join(1.0)  # it must now wait for the customer lock, holding nothing else
            assert resolver.is_alive()
            batch.execute(text("SET LOCAL lock_timeout = '1s'"))
            row = batch.execute(select(cases.c.id).where(cases.c.id == case["id"]).with_for_update(nowait=True))
            assert row.scalar_one() == case["id"]  # the case row is free: no lock-order inversion
            batch.rollback()
        resolver.join(10)
        assert not resolver.is_alive()
        assert service.get(case["id"])["status"] == "resolved"
    finally:
        rt.close()
