"""The console's survey pages: the funnel and its reasons from invitations the real engine made,
the drill-down links, the answers (escaped, masked, paginated, exported), the scope of every route,
bad input, and the live feed.

The hub: the console's org (stores S001, S002 of district sh, S003 of hz, S101 of gz), a checkout
source, recording SMS and email destinations (tests/features/surveys/conftest.py), the retail
questionnaire after each checkout (30 minutes later). The invitations (``SurveyHub.build``):

====  =====  ========  ======================================================
R1    S001   M1        sent, opened, answered NPS 3 (with a hostile comment)
R2    S001   M2        sent, never opened
R3    S001   nobody    suppressed: unreachable (anonymous)
R5a   S001   M5        invited, then the customer opted out: cancelled at send time
R5b   S001   M5        suppressed: opted_out
R4    S002   M4        sent, opened, answered NPS 10
R6    S003   M6        invited after the delivery ran: waiting
====  =====  ========  ======================================================
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from kit.console import ConsoleKit, console_config, text_of
from kit.surveys import CHECKOUT_MAPPING, checkout, ingest, outbox_of
from sqlalchemy import select, update

from hub.console.schema import console_audit, console_feed
from hub.features.surveys.schema import invitations
from hub.store.schema import customers

SURVEYS: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "stores": {"S001": {"name": "徐汇店", "type": "supermarket"}},
    "channels": [
        {"channel": "sms", "destination": "sms", "template": "SMS_1"},
        {"channel": "email", "destination": "email"},
    ],
    "questionnaires": {"retail": "retail"},
    "rules": [
        {
            "name": "after_checkout",
            "questionnaire": "retail",
            "when": {"kind": "transaction"},
            "delay": "30m",
            "expires": "3d",
        }
    ],
}
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)> 请回电13812345678"


def survey_config(db: str) -> dict[str, Any]:
    base = console_config(db)
    return console_config(
        db,
        extra={
            "surveys": SURVEYS,
            "sources": {
                **base["sources"],
                "pos": {"connector": "webhook", "options": {"secret": "whsec_dGVzdA=="}, "mapping": CHECKOUT_MAPPING},
            },
            "destinations": {
                **base["destinations"],
                "sms": {"connector": "test_recording"},
                "email": {"connector": "test_recording"},
            },
        },
    )


def answers_form(nps: int, comment: str = "牛奶快过期了") -> dict[str, Any]:
    return {
        "q_nps": str(nps),
        "q_overall": "2" if nps < 7 else "5",
        "q_dairy_freshness": "2",
        "q_dairy_cold_chain": "不够冷",
        "q_fresh_quality": "4",
        "q_fresh_issue": ["价格偏高"],
        "q_comment": comment,
    }


class SurveyHub:
    """The console over a hub whose invitations the real engine made (see the module docstring)."""

    def __init__(self, kit: ConsoleKit, clock: Any):
        self.kit = kit
        self.rt = kit.rt
        self.clock = clock
        self.web = TestClient(kit.app)
        self.ids: dict[str, str] = {}
        self.customers: dict[str, str] = {}

    def token(self, receipt: str) -> str:
        inv = self.ids[receipt]
        for row in outbox_of(self.rt):
            if row["cause"] == f"survey_invitation:{inv}":
                return str(row["message"]["url"]).rsplit("/", 1)[1]
        raise AssertionError(f"no message for {receipt}")

    def build(self) -> SurveyHub:
        from hub.features.delivery import build_worker

        for n, (receipt, store, member) in enumerate(
            (
                ("R1", "S001", "M1"),
                ("R2", "S001", "M2"),
                ("R3", "S001", None),
                ("R4", "S002", "M4"),
                ("R5a", "S001", "M5"),
            ),
            start=1,
        ):
            ingest(self.rt, checkout(receipt, store=store, member=member, phone=f"1390000000{n}" if member else None))
        self._load()
        with self.rt.store.begin() as conn:
            conn.execute(update(customers).where(customers.c.id == self.customers["R5a"]).values(opted_out=True))
        ingest(self.rt, checkout("R5b", store="S001", member="M5", phone="13900000005"))
        self.clock.advance(minutes=31)
        build_worker(self.rt, concurrency=1).drain()
        for receipt in ("R1", "R4"):
            assert self.web.get(f"/s/{self.token(receipt)}").status_code == 200
        self.clock.advance(minutes=5)
        assert self.web.post(f"/s/{self.token('R1')}", data=answers_form(3, HOSTILE)).status_code == 200
        assert self.web.post(f"/s/{self.token('R4')}", data=answers_form(10, "很好")).status_code == 200
        ingest(self.rt, checkout("R6", store="S003", member="M6", phone="13900000006"))
        self._load()
        return self

    def _load(self) -> None:
        with self.rt.store.connect() as conn:
            for r in conn.execute(select(invitations.c.id, invitations.c.order_id, invitations.c.customer_id)):
                self.ids[r.order_id] = r.id
                if r.customer_id:
                    self.customers[r.order_id] = r.customer_id


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path, clock: Any) -> Iterator[SurveyHub]:
    from kit.runtime import build_runtime

    if request.param == "postgresql":
        db = request.getfixturevalue("pg_store").url
    else:
        db = f"sqlite:///{tmp_path / 'console.db'}"
    rt = build_runtime(survey_config(db), path=tmp_path / "cxhub.yaml", clock=clock)
    try:
        yield SurveyHub(ConsoleKit(rt), clock).build()
    finally:
        rt.close()


def funnel_of(client: TestClient, **params: str) -> dict[str, Any]:
    r = client.get("/console/api/surveys/funnel", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'data-invitation="([^"]+)"', html))


# ---------------------------------------------------------------- the funnel and its reasons


def test_funnel_counts_and_reasons_by_scope(hub: SurveyHub) -> None:
    admin = hub.kit.user("admin")
    data = funnel_of(admin)
    assert data["funnel"]["counts"] == {"eligible": 7, "invited": 5, "sent": 3, "opened": 2, "answered": 2}
    reasons = {(r["group"], r["reason"]): r["count"] for r in data["funnel"]["reasons"]}
    assert reasons == {
        ("suppressed", "unreachable"): 1,
        ("suppressed", "opted_out"): 1,
        ("unsent", "opted_out"): 1,
        ("waiting", "waiting"): 1,
    }
    assert data["scores"]["total"]["answers"] == 2 and data["scores"]["total"]["nps"] == 0.0  # one 10, one 3
    assert data["scores"]["nps_histogram"][3] == 1 and data["scores"]["nps_histogram"][10] == 1

    s001 = funnel_of(hub.kit.user("store_manager", "S001"))["funnel"]["counts"]
    assert s001 == {"eligible": 5, "invited": 3, "sent": 2, "opened": 1, "answered": 1}
    s002 = funnel_of(hub.kit.user("store_manager", "S002"))
    assert s002["funnel"]["counts"] == {"eligible": 1, "invited": 1, "sent": 1, "opened": 1, "answered": 1}
    assert s002["funnel"]["reasons"] == [] and s002["scores"]["total"]["nps"] == 100.0
    east = hub.kit.user("region_manager", "east")
    assert funnel_of(east, district="hz")["funnel"]["counts"]["eligible"] == 1  # S003's R6
    assert funnel_of(east, store="S002", channel="sms")["funnel"]["counts"]["answered"] == 1
    assert funnel_of(admin, region="south")["funnel"]["counts"]["eligible"] == 0
    # a period without the invitations
    assert funnel_of(admin, **{"from": "2026-10-01", "to": "2026-10-31"})["funnel"]["counts"]["eligible"] == 0

    page = admin.get("/console/surveys")
    assert page.status_code == 200, page.text
    assert 'data-stage="answered"' in page.text and 'data-reason="unreachable"' in page.text
    assert 'hx-trigger="cx:surveys from:body' in page.text


def test_reason_and_stage_links_lead_to_their_invitations(hub: SurveyHub) -> None:
    admin = hub.kit.user("admin")
    page = admin.get("/console/surveys").text
    links = {
        (q.get("stage", [""])[0], q.get("reason", [""])[0]): q
        for href in re.findall(r'href="(/console/surveys/invitations\?[^"]+)"', page)
        for q in [parse_qs(urlsplit(href.replace("&amp;", "&")).query)]
    }
    expected = {
        ("suppressed", "unreachable"): {"R3"},
        ("suppressed", "opted_out"): {"R5b"},
        ("unsent", "opted_out"): {"R5a"},
        ("", "waiting"): {"R6"},
        ("answered", ""): {"R1", "R4"},
        ("sent", ""): {"R1", "R2", "R4"},
        ("opened", ""): {"R1", "R4"},
        ("invited", ""): {"R1", "R2", "R4", "R5a", "R6"},
        ("eligible", ""): set(hub.ids),
    }
    for key, receipts in expected.items():
        assert key in links, (key, sorted(links))
        params = {k: v[0] for k, v in links[key].items()}
        r = admin.get("/console/surveys/invitations", params=params)
        assert r.status_code == 200, r.text
        assert ids_in(r.text) == {hub.ids[x] for x in receipts}, key


def test_drill_down_links_lead_to_the_answers_behind_a_point(hub: SurveyHub) -> None:
    admin = hub.kit.user("admin")
    page = admin.get("/console/surveys", params={"store": "S001"}).text
    trend = re.search(r'data-chart="surveys-trend" data-drill="([^"]+)"', page)
    histogram = re.search(r'data-chart="surveys-nps-histogram" data-drill="([^"]+)"', page)
    assert trend and histogram
    day = hub.clock().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d")
    url = trend.group(1).replace("&amp;", "&").replace("{name}", day).replace("{series}", "NPS")
    r = admin.get(url)
    assert r.status_code == 200, r.text
    assert ids_in(r.text) == {hub.ids["R1"]}  # the S001 filter follows the drill
    # every answer of that day (HQ, no store filter) and the bar of score 10
    everywhere = admin.get("/console/surveys").text
    drill = re.search(r'data-chart="surveys-trend" data-drill="([^"]+)"', everywhere)
    assert drill
    r = admin.get(drill.group(1).replace("&amp;", "&").replace("{name}", day).replace("{series}", "CSAT"))
    assert ids_in(r.text) == {hub.ids["R1"], hub.ids["R4"]}
    bars = re.search(r'data-chart="surveys-nps-histogram" data-drill="([^"]+)"', everywhere)
    assert bars
    r = admin.get(bars.group(1).replace("&amp;", "&").replace("{name}", "10"))
    assert ids_in(r.text) == {hub.ids["R4"]}
    # a question and a score range on it
    r = admin.get("/console/surveys/responses", params={"question": "overall", "min": "4"})
    assert ids_in(r.text) == {hub.ids["R4"]}
    r = admin.get("/console/surveys/responses", params={"question": "dairy_cold_chain"})
    assert ids_in(r.text) == {hub.ids["R1"], hub.ids["R4"]}
    r = admin.get("/console/surveys/responses", params={"question": "bakery_taste"})
    assert ids_in(r.text) == set()


def test_answers_are_escaped_masked_and_paginated(hub: SurveyHub) -> None:
    admin = hub.kit.user("admin")
    r = admin.get("/console/surveys/responses")
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;alert(" in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "13812345678" not in r.text and "13900000001" not in r.text  # the comment's and the buyer's phone
    assert "不够冷" in r.text and "您对本次购物的整体满意度如何？" in r.text
    first = admin.get("/console/surveys/responses", params={"limit": "1"})
    assert len(ids_in(first.text)) == 1
    nxt = re.search(r'class="pager"><a href="([^"]+)"', first.text)
    assert nxt
    second = admin.get(nxt.group(1).replace("&amp;", "&"))
    assert len(ids_in(second.text)) == 1 and ids_in(second.text) != ids_in(first.text)
    assert 'class="pager"' not in second.text
    api = admin.get("/console/api/surveys/responses", params={"limit": "1"}).json()
    assert len(api["rows"]) == 1 and api["next"]
    more = admin.get("/console/api/surveys/responses", params={"limit": "1", "after": api["next"]}).json()
    assert more["next"] is None and more["rows"][0]["id"] != api["rows"][0]["id"]
    row = next(x for x in (api["rows"] + more["rows"]) if x["id"] == hub.ids["R1"])
    assert (
        row["nps"] == 3 and "13812345678" not in row["text"] and row["customer"] and "1390000000" not in row["customer"]
    )


def test_export_is_scoped_masked_audited_and_needs_the_permission(hub: SurveyHub) -> None:
    manager = hub.kit.user("store_manager", "S001")
    r = manager.get("/console/surveys/responses.csv")
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 2 and hub.ids["R1"] in rows[1] and hub.ids["R4"] not in r.text
    assert "13812345678" not in r.text and "<script>" in r.text  # a file is not HTML; masked, though
    x = manager.get("/console/surveys/responses.xlsx", params={"metric": "nps", "max": "6"})
    assert x.status_code == 200 and hub.ids["R1"] in text_of(x)
    with hub.rt.store.connect() as conn:
        audits = conn.execute(select(console_audit).where(console_audit.c.action == "export.survey_responses")).all()
    assert len(audits) == 2
    agent = hub.kit.user("agent", "S001")
    assert agent.get("/console/surveys/responses.csv").status_code == 403
    assert manager.get("/console/surveys/responses.pdf").status_code == 400


def test_a_store_manager_sees_nothing_of_another_store_on_any_route(hub: SurveyHub) -> None:
    s002 = hub.kit.user("store_manager", "S002")
    foreign = [hub.ids[x] for x in ("R1", "R2", "R3", "R5a", "R5b", "R6")]
    marks = [*foreign, "alert(", "牛奶快过期了", hub.customers["R1"]]
    for url in (
        "/console/surveys",
        "/console/surveys/responses",
        "/console/surveys/invitations",
        "/console/surveys/invitations?stage=suppressed",
        "/console/api/surveys/funnel",
        "/console/api/surveys/responses",
        "/console/surveys/responses.csv",
        "/console/surveys/responses.xlsx",
        "/console/tiles/surveys-nps",
        "/console/tiles/surveys-csat",
        "/console/tiles/surveys-ces",
        "/console/surveys/responses?region=east",
        "/console/surveys/invitations?district=sh",
    ):
        r = s002.get(url)
        assert r.status_code == 200, (url, r.text)
        body = text_of(r)
        assert not [m for m in marks if m in body], url
    own = s002.get("/console/surveys/responses")
    assert ids_in(own.text) == {hub.ids["R4"]}
    # asking for the other store by name is refused, not answered empty
    for url in ("/console/surveys?store=S001", "/console/api/surveys/responses?store=S001"):
        assert s002.get(url).status_code == 403, url
    # the customer page's panel
    from hub.features.surveys.console import customer_panel

    panel_app = _console_app(hub)
    me = _principal(hub, "store_manager", "S002")
    assert customer_panel(panel_app, me, hub.customers["R1"], hub.rt.features["surveys"]).count("data-invitation") == 0
    own_panel = customer_panel(panel_app, me, hub.customers["R4"], hub.rt.features["surveys"])
    assert hub.ids["R4"] in own_panel and "NPS 10" in own_panel
    s001 = _principal(hub, "store_manager", "S001")
    theirs = customer_panel(panel_app, s001, hub.customers["R1"], hub.rt.features["surveys"])
    assert hub.ids["R1"] in theirs and "&lt;script&gt;" in theirs and "<script>" not in theirs


def _console_app(hub: SurveyHub) -> Any:
    from hub.console.app import ConsoleApp

    return ConsoleApp(hub.rt)


def _principal(hub: SurveyHub, role: str, unit: str | None) -> Any:
    from hub.console.scope import Principal

    return Principal.of(hub.kit.tree, user_id=1, login="x", display_name="x", role=role, unit=unit)


def test_tiles_show_the_scores_of_the_scope(hub: SurveyHub) -> None:
    admin = hub.kit.user("admin")
    nps = admin.get("/console/tiles/surveys-nps")
    assert nps.status_code == 200 and "<strong>0.0</strong>" in nps.text and "n=2" in nps.text
    assert 'data-drill="/console/surveys/responses?' in nps.text
    s002 = hub.kit.user("store_manager", "S002").get("/console/tiles/surveys-nps")
    assert "<strong>100.0</strong>" in s002.text and "n=1" in s002.text
    assert "<strong>" in hub.kit.user("store_manager", "S101").get("/console/tiles/surveys-ces").text


# ---------------------------------------------------------------- bad input, live


BAD_INPUT = [
    ("/console/surveys?from=yesterday", 400, "from"),
    ("/console/surveys?from=2026-13-01", 400, "from"),
    ("/console/surveys?from=2026-11-10&to=2026-11-01", 400, "before"),
    ("/console/surveys?from=2024-01-01&to=2026-11-01", 400, "at most"),
    ("/console/surveys?store=S999", 400, "unknown store"),
    ("/console/surveys?store=%3Cscript%3E", 400, "store"),
    ("/console/surveys?region=north", 400, "unknown region"),
    ("/console/surveys?questionnaire=nope", 400, "questionnaire"),
    ("/console/surveys?channel=fax", 400, "channel"),
    ("/console/surveys/responses?limit=1000", 400, "limit"),
    ("/console/surveys/responses?limit=0", 400, "limit"),
    ("/console/surveys/responses?limit=ten", 400, "limit"),
    ("/console/surveys/responses?metric=happiness", 400, "metric"),
    ("/console/surveys/responses?metric=nps&min=11", 400, "min"),
    ("/console/surveys/responses?metric=csat&min=4&max=2", 400, "below"),
    ("/console/surveys/responses?min=3", 400, "metric"),
    ("/console/surveys/responses?question=nope", 400, "question"),
    ("/console/surveys/responses?after=garbage", 400, "after"),
    ("/console/surveys/invitations?stage=lost", 400, "stage"),
    ("/console/surveys/invitations?reason=DROP%20TABLE", 400, "reason"),
    ("/console/api/surveys/funnel?to=soon", 400, "to"),
    ("/console/api/surveys/responses?limit=201", 400, "limit"),
]


def test_bad_input_is_a_clear_4xx(hub: SurveyHub) -> None:
    admin = hub.kit.user("admin")
    for url, status, says in BAD_INPUT:
        r = admin.get(url)
        assert r.status_code == status, (url, r.text)
        assert says in r.text, (url, r.text)
        assert "<script>" not in r.text, url


def test_an_answer_is_published_to_the_live_pages_of_its_store(hub: SurveyHub) -> None:
    with hub.rt.store.connect() as conn:
        rows = conn.execute(select(console_feed).where(console_feed.c.topic == "surveys")).mappings().all()
    assert {(r["store"], r["ref"]) for r in rows} == {("S001", hub.ids["R1"]), ("S002", hub.ids["R4"])}
    with hub.rt.store.connect() as conn:
        inv = conn.execute(select(invitations).where(invitations.c.id == hub.ids["R1"])).mappings().one()
    assert (inv["nps"], inv["csat"], inv["ces"]) == (3, 2, None)
    assert inv["scores"]["comment"] is True and inv["scores"]["dairy_cold_chain"] == "不够冷"
    assert inv["opened_at"] is not None


def test_unsigned_requests_are_refused(hub: SurveyHub) -> None:
    anon = hub.kit.client()
    assert anon.get("/console/api/surveys/funnel").status_code == 401
    assert anon.get("/console/surveys").status_code == 303
    integrator = hub.kit.user("integrator")
    assert integrator.get("/console/surveys").status_code == 403
    assert integrator.get("/console/api/surveys/responses").status_code == 403
