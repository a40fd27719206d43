"""Staff verdicts become labelled examples with who and when; topics are stored per touchpoint and
feed the drivers report; a missed touchpoint is escalated into a case."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from kit.cases import ingest, review
from sqlalchemy import select

from hub.features.feedback.cases import CaseService
from hub.features.feedback.modelops import label_examples
from hub.features.feedback.verdicts import StaffVerdicts, VerdictError, drivers, feedback_topics, labels
from hub.sdk.testing import FakeClock
from hub.store import Store


def test_not_negative_is_a_label_with_who_and_when(service: CaseService, store: Store, clock: FakeClock) -> None:
    ingest(service, store, clock, review(rating=None, text="太差了，等了一个小时，打电话13812345678也不接"))
    [case] = service.list()
    label_id = StaffVerdicts(service).on_case(case["id"], "not_negative", actor="王店长", via="cli", note="老顾客玩笑")
    with store.connect() as conn:
        [row] = labels(conn)
    assert row["id"] == label_id and row["verdict"] == "not_negative" and row["negative"] is False
    assert row["actor"] == "王店长" and row["via"] == "cli" and row["at"] == clock()
    assert "13812345678" not in row["text"] and "等了一个小时" in row["text"]  # masked, still useful
    trail = service.get(case["id"])["events"]
    assert trail[-1]["action"] == "verdict" and trail[-1]["detail"]["label"] == label_id


def test_wrong_topic_keeps_both_lists(service: CaseService, store: Store, clock: FakeClock) -> None:
    ingest(service, store, clock, review(rating=1, text="配送太慢了"))
    [case] = service.list()
    StaffVerdicts(service).on_case(
        case["id"], "wrong_topic", actor="li", via="card", wrong_topics=["delivery"], right_topics=["waiting"]
    )
    with store.connect() as conn:
        [row] = labels(conn)
    assert row["topics"] == {"wrong": ["delivery"], "right": ["waiting"]} and row["negative"] is None
    assert label_examples([row]) == ([], [])  # no sentiment label: not a training example for it


def test_bad_verdicts_are_refused(service: CaseService, store: Store, clock: FakeClock) -> None:
    ingest(service, store, clock, review(rating=1, text="差"))
    [case] = service.list()
    with pytest.raises(VerdictError, match="not_negative or wrong_topic"):
        StaffVerdicts(service).on_case(case["id"], "missed", actor="x", via="cli")
    with pytest.raises(VerdictError, match="no touchpoint"):
        StaffVerdicts(service).missed("no-such-id", actor="x", via="cli")


def test_missed_touchpoint_opens_a_case_and_is_a_negative_label(
    service: CaseService, store: Store, clock: FakeClock
) -> None:
    from hub.store.schema import touchpoints

    ev = review(rating=5, text="还行吧，就是有点咸")  # 5 stars: the detector lets it through
    with store.begin() as conn:
        conn.execute(
            touchpoints.insert(),
            {
                "id": ev.id,
                "source": ev.source,
                "external_id": ev.external_id,
                "kind": ev.kind.value,
                "occurred_at": ev.occurred_at,
                "received_at": ev.received_at,
                "store": ev.org.store,
                "doc": ev.model_dump(mode="json"),
            },
        )
    ingest(service, store, clock, ev)
    assert service.list() == []
    label_id, case_id = StaffVerdicts(service).missed(ev.id, actor="张店长", via="cli")
    case = service.get(case_id)
    assert case["severity"] == "medium" and any("escalated by 张店长" in r for r in case["doc"]["reasons"])
    with store.connect() as conn:
        [row] = labels(conn)
    assert row["id"] == label_id and row["verdict"] == "missed" and row["negative"] is True


def test_topics_are_stored_once_and_drive_the_weekly_report(
    service: CaseService, store: Store, clock: FakeClock
) -> None:
    slow = review(rating=2, text="味道不错，但是配送太慢了", customer="c1", ext="t1")
    again = review(rating=1, text="配送超时一个小时", customer="c2", ext="t2")
    happy = review(rating=5, text="配送很快，味道很好", customer="c3", ext="t3")
    ingest(service, store, clock, slow, again, happy)
    ingest(service, store, clock, slow)  # a replay adds nothing
    with store.connect() as conn:
        rows = conn.execute(select(feedback_topics)).mappings().all()
        report = drivers(conn, clock() + timedelta(days=1))
    assert {(r["touchpoint_id"], r["topic"], r["polarity"]) for r in rows} >= {
        (slow.id, "delivery", "negative"),
        (slow.id, "taste", "positive"),
        (again.id, "delivery", "negative"),
        (happy.id, "delivery", "positive"),
    }
    top = report[0]
    assert (top.store, top.topic, top.negative, top.total) == ("S001", "delivery", 2, 3)
    assert top.avg_rating5 == pytest.approx(8 / 3, abs=0.01)
    case = service.list()[0]
    assert any(t["topic"] == "delivery" and t["polarity"] == "negative" for t in case["doc"]["topics"])


def test_cxhub_stats_by_topic_is_the_drivers_report(
    service: CaseService, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from cli import app

    ingest(
        service,
        store,
        clock,
        review(rating=2, text="味道不错，但是配送太慢了", customer="c1", ext="t1"),
        review(rating=1, text="配送超时一个小时", customer="c2", ext="t2"),
    )
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(
        f"secret_key: k\nstore: {{url: '{store.url}'}}\nfeedback: {{org: {{stores: {{S001: {{name: 徐汇店}}}}}}}}\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["stats", "--by", "topic", "--since", "2000-01-01", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "徐汇店" in res.output and "配送" in res.output, res.output
    res = CliRunner().invoke(app, ["stats", "--by", "topic", "--since", "2000-01-01", "--json", "-c", str(cfg)])
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows[0]["topic"] == "delivery" and rows[0]["negative"] == 2, rows
