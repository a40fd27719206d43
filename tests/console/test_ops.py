"""The console's connectors, quarantine and outbox pages: who sees them, pause and resume of a
scheduled pull (the scheduler skips a paused source), replays, the hourly tile's scope, bad input,
and payloads shown escaped and masked."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from kit.console import ConsoleKit
from sqlalchemy import func, insert, select, update

from hub.console.schema import console_audit, console_feed
from hub.runner import Leadership, build_scheduler
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import inbox as inbox_table
from hub.store.schema import outbox, quarantine, touchpoints
from hub.sync import last_run, paused

from .core_kit import BAD, NOW, PLAN_ROWS, explain, ops_fixture, seed_touchpoints  # noqa: F401  (the ops fixture)


def _count(kit: ConsoleKit, stmt: Any) -> int:
    with kit.rt.store.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _audit(kit: ConsoleKit) -> list[tuple[str, str | None]]:
    with kit.rt.store.connect() as conn:
        return [(r.action, r.target) for r in conn.execute(select(console_audit).order_by(console_audit.c.id))]


def _feed_topics(kit: ConsoleKit) -> list[str]:
    with kit.rt.store.connect() as conn:
        return list(conn.execute(select(console_feed.c.topic).order_by(console_feed.c.id)).scalars())


# ------------------------------------------------------------------------------- who sees what


def test_an_integrator_sees_connectors_but_no_customers(ops: ConsoleKit) -> None:
    client = ops.user("integrator")
    page = client.get("/console/connectors")
    assert page.status_code == 200
    assert 'id="source-feed"' in page.text and 'id="source-reviews"' in page.text
    assert 'id="destination-robot"' in page.text
    assert "/console/connectors" in page.text and "/console/customers" not in page.text  # the menu
    assert client.get("/console/customers").status_code == 403
    assert client.get("/console/customers?q=M001").status_code == 403
    assert client.get("/console/quarantine").status_code == 200


@pytest.mark.parametrize(("role", "unit"), [("store_manager", "S001"), ("hq_analyst", None), ("agent", "S001")])
def test_business_roles_see_no_connectors(ops: ConsoleKit, role: str, unit: str | None) -> None:
    client = ops.user(role, unit)
    assert client.get("/console/connectors").status_code == 403
    assert client.get("/console/quarantine").status_code == 403
    assert client.get("/console/api/connectors").status_code == 403


# ------------------------------------------------------------------------------- pause / resume


def test_pause_stops_the_scheduled_pull_and_resume_lets_it_run(
    ops: ConsoleKit, caplog: pytest.LogCaptureFixture
) -> None:
    client = ops.user("integrator")
    assert client.post("/console/connectors/feed/pause", data={}).status_code == 403  # no CSRF token
    assert paused(ops.rt.store, "feed") is None

    r = client.post("/console/connectors/feed/pause", data={"csrf": client.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303
    assert paused(ops.rt.store, "feed")["by"].startswith("integrator")  # type: ignore[index]
    assert "已暂停" in client.get("/console/connectors").text

    job = build_scheduler(ops.rt, Leadership(ops.rt)).get_job("sync:feed")
    ops.rt.clock.advance(minutes=90)  # type: ignore[attr-defined]  (due; the session still alive)
    with caplog.at_level(logging.INFO, logger="cxhub.run"):
        job.func()
    assert _count(ops, select(func.count()).select_from(touchpoints)) == 0
    assert "sync feed: skipped, paused in the console" in caplog.text

    r = client.post("/console/connectors/feed/resume", headers={"X-CSRF-Token": client.csrf, "HX-Request": "true"})  # type: ignore[attr-defined]
    assert r.status_code == 204 and r.headers["hx-refresh"] == "true"
    assert paused(ops.rt.store, "feed") is None
    job.func()
    assert _count(ops, select(func.count()).select_from(touchpoints)) == 1
    last = last_run(ops.rt.store, "feed")
    assert last is not None and last["ok"] is True and '"stored": 1' in last["outcome"]

    page = ops.login(ops.add_user("admin")).get("/console/api/connectors").json()
    feed = next(s for s in page["sources"] if s["name"] == "feed")
    assert feed["mode"] == "pull" and feed["paused"] is None and feed["last_ok"] is True
    assert feed["received"] == 1 and feed["error_rate"] == 0.0
    assert ("source.pause", "source:feed") in _audit(ops) and ("source.resume", "source:feed") in _audit(ops)
    assert _feed_topics(ops).count("sources") == 2


def test_only_a_pull_source_pauses_and_only_with_ops_act(ops: ConsoleKit) -> None:
    admin = ops.user("admin")
    assert admin.post("/console/connectors/reviews/pause", data={"csrf": admin.csrf}).status_code == 400  # type: ignore[attr-defined]
    assert admin.post("/console/connectors/nope/pause", data={"csrf": admin.csrf}).status_code == 404  # type: ignore[attr-defined]
    analyst = ops.user("hq_analyst")
    assert analyst.post("/console/connectors/feed/pause", data={"csrf": analyst.csrf}).status_code == 403  # type: ignore[attr-defined]
    assert paused(ops.rt.store, "feed") is None


# ------------------------------------------------------------------------------- quarantine


def _quarantine_bad(kit: ConsoleKit, **extra: Any) -> int:
    kit.ingest("reviews", "generic_review", {**BAD, **extra})
    with kit.rt.store.connect() as conn:
        return int(conn.execute(select(func.max(quarantine.c.id))).scalar_one())


def test_the_quarantine_shows_reason_stage_and_a_masked_escaped_payload(ops: ConsoleKit) -> None:
    _quarantine_bad(ops, mobile="13812345678", content="<script>alert('x')</script>", buyer_nick="张三丰")
    page = ops.user("integrator").get("/console/quarantine")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
    assert "13812345678" not in page.text and "138****5678" in page.text
    assert "张三丰" not in page.text
    assert "rating" in page.text  # the reason names the field
    stats = ops.login(ops.add_user("admin")).get("/console/api/connectors").json()
    reviews = next(s for s in stats["sources"] if s["name"] == "reviews")
    assert reviews["open_quarantine"] == 1 and reviews["quarantined_24h"] == 1 and reviews["error_rate"] == 1.0


def test_replay_one_record_after_a_fix(ops: ConsoleKit) -> None:
    qid = _quarantine_bad(ops)
    client = ops.user("integrator")
    # replayed as it is: still bad, still open, with its reason
    assert client.post(f"/console/quarantine/{qid}/replay", data={"csrf": client.csrf}).status_code == 303  # type: ignore[attr-defined]
    with ops.rt.store.begin() as conn:
        assert conn.execute(select(quarantine.c.status).where(quarantine.c.id == qid)).scalar_one() == "open"
        conn.execute(update(quarantine).where(quarantine.c.id == qid).values(payload={**BAD, "rating": 2}))
    r = client.post(f"/console/quarantine/{qid}/replay", data={"csrf": client.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303
    with ops.rt.store.connect() as conn:
        assert conn.execute(select(quarantine.c.status).where(quarantine.c.id == qid)).scalar_one() == "replayed"
    assert _count(ops, select(func.count()).select_from(touchpoints)) == 1
    assert _audit(ops).count(("quarantine.replay", f"quarantine:{qid}")) == 2
    assert "quarantine" in _feed_topics(ops)
    # once replayed, a second replay is refused
    again = client.post(f"/console/quarantine/{qid}/replay", data={"csrf": client.csrf})  # type: ignore[attr-defined]
    assert again.status_code == 409


def test_replay_a_sources_quarantine(ops: ConsoleKit) -> None:
    qid = _quarantine_bad(ops)
    with ops.rt.store.begin() as conn:
        conn.execute(update(quarantine).where(quarantine.c.id == qid).values(payload={**BAD, "rating": 4}))
    client = ops.user("admin")
    assert client.post("/console/connectors/reviews/replay", data={"csrf": client.csrf}).status_code == 303  # type: ignore[attr-defined]
    assert _count(ops, select(func.count()).select_from(touchpoints)) == 1
    assert ("quarantine.replay", "source:reviews") in _audit(ops)


def test_replay_the_dead_messages_of_a_destination(ops: ConsoleKit) -> None:
    now = ops.rt.clock()
    with ops.rt.store.begin() as conn:
        for i, (dest, status) in enumerate(
            [("robot", "dead"), ("robot", "dead"), ("robot", "failed"), ("other", "dead")]
        ):
            conn.execute(
                insert(outbox).values(
                    key=f"k{i}",
                    destination=dest,
                    status=status,
                    message={},
                    attempts=9,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
    admin = ops.user("admin")
    stats = admin.get("/console/api/connectors").json()["destinations"]
    assert {d["name"]: (d["queued"], d["retrying"], d["dead"]) for d in stats} == {
        "robot": (0, 1, 2),
        "other": (0, 0, 1),
    }
    assert admin.post("/console/destinations/robot/replay-dead", data={"csrf": admin.csrf}).status_code == 303  # type: ignore[attr-defined]
    with ops.rt.store.connect() as conn:
        rows = dict(conn.execute(select(outbox.c.key, outbox.c.status)).all())
    assert rows == {"k0": "pending", "k1": "pending", "k2": "failed", "k3": "dead"}
    assert ("outbox.replay_dead", "destination:robot") in _audit(ops)
    assert "outbox" in _feed_topics(ops)
    assert admin.post("/console/destinations/nowhere/replay-dead", data={"csrf": admin.csrf}).status_code == 404  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "/console/quarantine?limit=100000",
        "/console/quarantine?limit=0",
        "/console/quarantine?status=bogus",
        "/console/quarantine?before=-1",
        "/console/quarantine.pdf",
        "/console/quarantine.csv?status=bogus",
    ],
)
def test_bad_input_is_a_4xx(ops: ConsoleKit, url: str) -> None:
    r = ops.user("integrator").get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code)


def test_replaying_an_unknown_record_is_a_404(ops: ConsoleKit) -> None:
    client = ops.user("integrator")
    assert client.post("/console/quarantine/999999/replay", data={"csrf": client.csrf}).status_code == 404  # type: ignore[attr-defined]
    assert client.post("/console/quarantine/abc/replay", data={"csrf": client.csrf}).status_code == 422  # type: ignore[attr-defined]


def test_the_quarantine_pages_by_id(ops: ConsoleKit) -> None:
    for i in range(3):
        _quarantine_bad(ops, review_id=f"bad-{i}")
    client = ops.user("integrator")
    first = client.get("/console/quarantine?limit=2")
    ids = [int(x) for x in re.findall(r'id="q-(\d+)"', first.text)]
    assert len(ids) == 2 and ids == sorted(ids, reverse=True)
    nxt = re.search(r"before=(\d+)", first.text)
    assert nxt
    second = client.get(f"/console/quarantine?limit=2&before={nxt.group(1)}")
    assert [int(x) for x in re.findall(r'id="q-(\d+)"', second.text)] == [min(ids) - 1]


# ------------------------------------------------------------------------------- the hourly tile


def test_the_hourly_tile_counts_the_viewers_stores_only(ops: ConsoleKit) -> None:
    # 10:00 in Shanghai (02:00 UTC), the clock at 03:00 UTC
    ops.ingest_review(1, store="S001")
    ops.ingest_review(2, store="S001")
    ops.ingest_review(3, store="S002")

    def chart(role: str, unit: str | None) -> dict[str, Any]:
        html = ops.user(role, unit).get("/console/tiles/touchpoints-hourly").text
        found = re.search(r'<script type="application/json" id="chart-touchpoints-hourly">(.*?)</script>', html, re.S)
        assert found, html
        return json.loads(found.group(1))

    def total(options: dict[str, Any]) -> int:
        return sum(sum(s["data"]) for s in options["series"])

    s002 = chart("store_manager", "S002")
    assert total(s002) == 1
    assert s002["xAxis"]["data"][-1] == "11:00" and s002["xAxis"]["data"][-2] == "10:00"
    assert s002["series"][0]["name"] == "meituan" and s002["series"][0]["data"][-2] == 1
    assert total(chart("district_manager", "sh")) == 3
    assert total(chart("hq_analyst", None)) == 3
    empty = ops.user("store_manager", "S101").get("/console/tiles/touchpoints-hourly").text
    assert "共 0 个触点" in empty and "data-chart" not in empty
    assert ops.user("integrator").get("/console/tiles/touchpoints-hourly").status_code == 403


def test_a_channel_name_cannot_break_out_of_the_chart_data(ops: ConsoleKit) -> None:
    ops.ingest(
        "reviews",
        "generic_review",
        {**BAD, "review_id": "x1", "rating": 1, "platform": "</script><script>alert(1)</script>"},
    )
    html = ops.user("admin").get("/console/tiles/touchpoints-hourly").text
    assert "<script>alert" not in html and "</script><script>" not in html


# ------------------------------------------------------------------------------- query plans


@pytest.mark.postgres
def test_the_hourly_chart_and_the_error_rate_read_indexes(pg_store: Store) -> None:
    """The plans at PLAN_ROWS touchpoints (measured at 1,000,000 too: the same plans, 0.2 ms for
    a store's chart, 1.5 ms for HQ's, 0.3 ms for a source's records of a day)."""
    from hub.console.overview import hourly_query
    from hub.console.scope import OrgTree, OrgUnit, Principal

    seed_touchpoints(pg_store, PLAN_ROWS)
    tree = OrgTree.build([OrgUnit("S001", "store"), OrgUnit("S002", "store")])
    since = NOW - timedelta(hours=23)
    manager = Principal.of(tree, user_id=1, login="m", display_name="m", role="store_manager", unit="S002")
    hq = Principal.of(tree, user_id=2, login="h", display_name="h", role="hq_analyst", unit=None)
    plans = {
        "manager": explain(pg_store, hourly_query(manager, since, "postgresql")),
        "hq": explain(pg_store, hourly_query(hq, since, "postgresql")),
        "received": explain(
            pg_store,
            select(func.count()).where(inbox_table.c.source == "src1", inbox_table.c.received_at >= since),
        ),
    }
    for name, plan in plans.items():
        print(f"--- {name}\n{plan}")
        assert "Seq Scan" not in plan, (name, plan)
    assert "ix_touchpoints_store_occurred" in plans["manager"]
    assert "ix_touchpoints_kind_occurred" in plans["hq"]
    assert "ix_inbox_source_received" in plans["received"]


@pytest.mark.postgres
@pytest.mark.parametrize("console", ["postgresql"], indirect=True)
def test_the_pages_on_postgresql(console: ConsoleKit, clock: FakeClock) -> None:
    """The hour buckets (date_trunc), the connectors' counts and the customer page on the real store."""
    clock.set(NOW)
    console.ingest_review(1, store="S002")
    console.ingest("reviews", "generic_review", {**BAD, "mobile": "13812345678"})
    admin = console.user("admin")
    html = admin.get("/console/tiles/touchpoints-hourly").text
    options = json.loads(re.search(r'id="chart-touchpoints-hourly">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert options["series"][0]["data"][-2] == 1 and options["xAxis"]["data"][-2] == "10:00"
    stats = admin.get("/console/api/connectors").json()
    reviews = next(s for s in stats["sources"] if s["name"] == "reviews")
    assert (reviews["received"], reviews["quarantined_24h"], reviews["open_quarantine"]) == (2, 1, 1)
    assert reviews["lag"] == 3600.0
    page = admin.get("/console/quarantine")
    assert page.status_code == 200 and "138****5678" in page.text
    with console.rt.store.connect() as conn:
        cid = conn.execute(select(touchpoints.c.customer_id)).scalar()
    assert console.user("store_manager", "S002").get(f"/console/customers/{cid}").status_code == 200
    assert console.user("store_manager", "S001").get(f"/console/customers/{cid}").status_code == 404
    assert console.user("store_manager", "S002").get("/console/customers?q=M001").status_code == 200
