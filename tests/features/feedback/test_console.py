"""The feedback feature's console pages: the case board, the case page and its actions, the JSON
API, exports, tiles and the customer panel; scoped by the org hierarchy, escaped, live."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit import console as console_kit
from kit.console import ConsoleKit
from sqlalchemy import select

from hub.console.schema import console_audit, console_feed
from hub.features.feedback.cases import CaseService
from hub.features.feedback.schema import case_events, cases
from hub.features.feedback.verdicts import feedback_labels

console = console_kit.console  # the fixture

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def service_of(kit: ConsoleKit) -> CaseService:
    svc = kit.rt.features["feedback"]
    assert isinstance(svc, CaseService)
    return svc


def case_ids(kit: ConsoleKit) -> dict[str, int]:
    """store -> the id of its (first) case."""
    out: dict[str, int] = {}
    for c in sorted(service_of(kit).list(), key=lambda c: c["id"]):
        out.setdefault(c["store"], c["id"])
    return out


def two_stores(kit: ConsoleKit) -> dict[str, int]:
    kit.ingest_review(1, store="S001", member="M1", text="牛奶是坏的，店员态度很差")
    kit.ingest_review(2, store="S002", member="M2", text="配送太慢了，很生气")
    ids = case_ids(kit)
    assert set(ids) == {"S001", "S002"}
    return ids


def rows_of(html: str) -> set[int]:
    return {int(m) for m in re.findall(r'id="case-row-(\d+)"', html)}


def post(client: TestClient, url: str, data: dict[str, str] | None = None, **headers: str) -> Any:
    return client.post(url, data=data or {}, headers={"X-CSRF-Token": client.csrf, **headers})  # type: ignore[attr-defined]


def status_of(kit: ConsoleKit, case_id: int) -> str:
    return str(service_of(kit).get(case_id)["status"])


# ------------------------------------------------------------------------------------- basics


def test_a_one_star_review_opens_a_case_on_the_board(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001", rating=1)
    [case] = service_of(console).list()
    assert case["status"] == "new" and case["store"] == "S001"
    page = console.user("store_manager", "S001").get("/console/cases")
    assert page.status_code == 200
    assert rows_of(page.text) == {case["id"]}
    # the live parts: the table refreshes on the feed's event, the row has a running clock
    assert 'hx-trigger="cx:cases from:body' in page.text
    clock = re.search(r'<time [^>]*data-deadline="([^"]+)" data-start="([^"]+)"', page.text)
    assert clock and clock.group(1) == case["ack_due_at"].isoformat()
    assert "徐汇店" in page.text and "服务态度" in page.text  # store name, topic tag
    assert 'data-sla="on_time"' in page.text


def test_the_menu_and_the_english_catalogue(console: ConsoleKit) -> None:
    client = console.user("admin")
    home = client.get("/console/")
    assert 'href="/console/cases"' in home.text and "差评工单" in home.text
    en = client.get("/console/cases?lang=en")
    assert en.status_code == 200 and "Negative feedback cases" in en.text


# -------------------------------------------------------------------------------------- scope


def test_a_store_manager_sees_none_of_another_stores_cases(console: ConsoleKit) -> None:
    ids = two_stores(console)
    mine, theirs = ids["S002"], ids["S001"]
    client = console.user("store_manager", "S002")

    board = client.get("/console/cases?state=all")
    assert rows_of(board.text) == {mine}
    assert "徐汇店" not in board.text.split("<tbody")[1]
    api = client.get("/console/api/cases?state=all").json()
    assert [c["id"] for c in api["cases"]] == [mine] and api["counts"]["open"] == 1
    csv_text = client.get("/console/cases.csv?state=all").content.decode("utf-8-sig")
    assert len(csv_text.strip().splitlines()) == 2 and "静安店" in csv_text and "徐汇店" not in csv_text

    # the other store's case: page, JSON and actions are refused, and nothing changes
    assert client.get(f"/console/cases/{theirs}").status_code == 403
    r = client.get(f"/console/api/cases/{theirs}")
    assert r.status_code == 403 and "error" in r.json()
    for action in ("ack", "resolve", "not_negative", "note", "assign"):
        r = post(client, f"/console/cases/{theirs}/{action}", {"note": "x", "assignee": ""})
        assert r.status_code == 403, action
    assert status_of(console, theirs) == "new"
    with console.rt.store.connect() as conn:
        actions = [r[0] for r in conn.execute(select(case_events.c.action).where(case_events.c.case_id == theirs))]
    assert "note" not in actions and "assign" not in actions
    # a guessed id that does not exist is a 404, not a 500
    assert client.get("/console/cases/987654").status_code == 404
    assert client.get("/console/api/cases/987654").status_code == 404

    # filters outside the scope are refused
    for query in ("store=S001", "region=south", "district=hz"):
        assert client.get(f"/console/cases?{query}").status_code == 403, query
        assert client.get(f"/console/api/cases?{query}").status_code == 403, query
    # ... and inside it they work
    assert rows_of(client.get("/console/cases?district=sh").text) == {mine}


def test_a_district_manager_sees_the_district(console: ConsoleKit) -> None:
    ids = two_stores(console)
    console.ingest_review(3, store="S101", member="M3", text="服务太差")
    client = console.user("district_manager", "sh")
    assert rows_of(client.get("/console/cases").text) == {ids["S001"], ids["S002"]}
    assert rows_of(client.get("/console/cases?store=S001").text) == {ids["S001"]}
    hq = console.user("hq_analyst")
    assert len(rows_of(hq.get("/console/cases").text)) == 3
    assert rows_of(hq.get("/console/cases?region=south").text) == {case_ids(console)["S101"]}


def test_an_analyst_reads_but_does_not_act(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("hq_analyst")
    page = client.get(f"/console/cases/{ids['S001']}")
    assert page.status_code == 200 and "/ack" not in page.text
    assert post(client, f"/console/cases/{ids['S001']}/ack").status_code == 403
    agent = console.user("agent", "S001")
    assert agent.get("/console/cases.csv").status_code == 403  # no data.export


# ------------------------------------------------------------------------------ filters, input


def test_filters(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("admin")
    assert rows_of(client.get("/console/cases?store=S001").text) == {ids["S001"]}
    assert rows_of(client.get("/console/cases?topic=delivery").text) == {ids["S002"]}
    assert rows_of(client.get("/console/cases?topic=hygiene").text) == set()
    assert rows_of(client.get("/console/cases?severity=high").text) == set(ids.values())
    assert rows_of(client.get("/console/cases?severity=low").text) == set()
    assert rows_of(client.get("/console/cases?region=east").text) == set(ids.values())
    post(client, f"/console/cases/{ids['S001']}/ack")
    assert rows_of(client.get("/console/cases?state=new").text) == {ids["S002"]}
    assert rows_of(client.get("/console/cases?state=acknowledged").text) == {ids["S001"]}
    assert rows_of(client.get("/console/cases?state=resolved").text) == set()


def test_sla_states_count_and_filter(console: ConsoleKit, clock: Any) -> None:
    ids = two_stores(console)  # high severity: acknowledge within 10 minutes, warned 2 minutes before
    client = console.user("admin")
    assert client.get("/console/api/cases").json()["counts"] == {"on_time": 2, "due_soon": 0, "breached": 0, "open": 2}
    clock.advance(minutes=9)
    counts = client.get("/console/api/cases").json()["counts"]
    assert counts["due_soon"] == 2 and counts["on_time"] == 0
    post(client, f"/console/cases/{ids['S001']}/ack")  # its clock is now the resolve deadline (24h)
    clock.advance(minutes=2)
    data = client.get("/console/api/cases").json()
    assert data["counts"] == {"on_time": 1, "due_soon": 0, "breached": 1, "open": 2}
    assert rows_of(client.get("/console/cases?sla=breached").text) == {ids["S002"]}
    assert rows_of(client.get("/console/cases?sla=on_time").text) == {ids["S001"]}
    by_id = {c["id"]: c for c in data["cases"]}
    assert by_id[ids["S001"]]["clock"]["kind"] == "resolve"
    assert by_id[ids["S002"]]["clock"]["state"] == "breached"
    # the tile counts the same, in scope
    tile = console.user("store_manager", "S002").get("/console/tiles/feedback-sla")
    assert tile.status_code == 200
    assert re.search(r'data-sla="breached"[^>]*>[^<]*1<', tile.text)
    assert re.search(r'data-sla="on_time"[^>]*>[^<]*0<', tile.text)


@pytest.mark.parametrize(
    "query",
    [
        "store=S999",
        "region=north",
        "district=bj",
        "severity=urgent",
        "state=sleeping",
        "sla=late",
        "topic=nope",
        "limit=1000",
        "limit=0",
        "limit=abc",
        "after=garbage",
        "after=20261102T020000.000000Z_x",
        "store=S001&store=S002",
        "store=" + "S" * 300,
    ],
)
def test_bad_filters_are_a_clear_400(console: ConsoleKit, query: str) -> None:
    client = console.user("admin")
    page = client.get(f"/console/cases?{query}")
    assert page.status_code == 400, page.text
    assert 'class="card error-page"' in page.text
    api = client.get(f"/console/api/cases?{query}")
    assert api.status_code == 400 and api.json()["error"]
    assert client.get(f"/console/cases.csv?{query}").status_code == 400


def test_unknown_ids_and_actions(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("admin")
    assert client.get("/console/cases/abc").status_code == 404
    assert client.get("/console/cases/99999999999999999999999").status_code == 404
    assert post(client, f"/console/cases/{ids['S001']}/explode").status_code == 404
    assert post(client, "/console/cases/12345/ack").status_code == 404
    r = client.get("/console/cases?store=S999")
    assert "没有门店 S999" in r.text


def test_keyset_pages(console: ConsoleKit) -> None:
    for n in range(7):
        console.ingest_review(n, store="S001", member=f"M{n}", text="服务太差了")
    client = console.user("store_manager", "S001")
    seen: list[int] = []
    url = "/console/cases?limit=3"
    pages = 0
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += sorted(rows_of(page.text), reverse=True)
        nxt = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
        pages += 1
    assert pages == 3 and len(seen) == 7 and len(set(seen)) == 7
    api = client.get("/console/api/cases?limit=3").json()
    assert len(api["cases"]) == 3 and api["next"]
    rest = client.get(f"/console/api/cases?limit=200&after={api['next']}").json()
    assert len(rest["cases"]) == 4 and rest["next"] is None


# ------------------------------------------------------------------------------------ actions


def test_actions_change_the_state_and_leave_a_trail(console: ConsoleKit) -> None:
    ids = two_stores(console)
    cid = ids["S001"]
    login = console.add_user("store_manager", "S001", login="zhang")
    client = console.login(login)

    r = post(client, f"/console/cases/{cid}/ack")
    assert r.status_code == 303 and r.headers["location"] == f"/console/cases/{cid}?done=feedback.done.ack"
    page = client.get(r.headers["location"])
    assert "已确认受理" in page.text
    assert status_of(console, cid) == "acknowledged"
    # the acknowledgement clock has stopped; the resolution clock runs
    assert re.search(r"<time [^>]*data-stopped", page.text)
    again = post(client, f"/console/cases/{cid}/ack")
    assert client.get(again.headers["location"]).text.count("无需重复操作") == 1
    post(client, f"/console/cases/{cid}/resolve")
    assert status_of(console, cid) == "resolved"
    post(client, f"/console/cases/{cid}/reopen")
    assert status_of(console, cid) == "new"

    trail = service_of(console).get(cid)["events"]
    mine = [(e["action"], e["actor"], e["via"]) for e in trail if e["via"] == "console"]
    assert mine == [
        ("acknowledged", "zhang", "console"),
        ("resolved", "zhang", "console"),
        ("reopened", "zhang", "console"),
    ]
    with console.rt.store.connect() as conn:
        audit = [r[0] for r in conn.execute(select(console_audit.c.action).where(console_audit.c.actor == "zhang"))]
    assert audit.count("case.ack") == 2 and "case.resolve" in audit and "case.reopen" in audit
    # the page shows the trail
    assert "确认受理" in client.get(f"/console/cases/{cid}").text


def test_an_action_needs_the_csrf_token(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("store_manager", "S001")
    r = client.post(f"/console/cases/{ids['S001']}/ack", data={})
    assert r.status_code == 403
    assert status_of(console, ids["S001"]) == "new"
    r = client.post(f"/console/cases/{ids['S001']}/ack", data={"csrf": client.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303 and status_of(console, ids["S001"]) == "acknowledged"


def test_not_negative_from_the_page(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("store_manager", "S001", login="li")
    page = client.get(f"/console/cases/{ids['S001']}")
    assert f'action="/console/cases/{ids["S001"]}/not_negative"' in page.text
    r = post(client, f"/console/cases/{ids['S001']}/not_negative")
    assert r.status_code == 303
    case = service_of(console).get(ids["S001"])
    assert case["status"] == "resolved" and case["resolved_by"] == "li"
    with console.rt.store.connect() as conn:
        [label] = conn.execute(select(feedback_labels)).mappings().all()
    assert label["verdict"] == "not_negative" and label["actor"] == "li" and label["via"] == "console"
    assert label["case_id"] == ids["S001"]


def test_one_tap_acknowledge_on_the_board_row(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("store_manager", "S002")
    board = client.get("/console/cases")
    assert f'hx-post="/console/cases/{ids["S002"]}/ack"' in board.text
    r = post(
        client, f"/console/cases/{ids['S002']}/ack", **{"HX-Request": "true", "HX-Target": f"case-row-{ids['S002']}"}
    )
    assert r.status_code == 200 and r.text.strip().startswith(f'<tr id="case-row-{ids["S002"]}"')
    assert 'data-status="acknowledged"' in r.text and "hx-post" not in r.text
    # a refused one-tap answers JSON (htmx swaps nothing)
    r = post(client, f"/console/cases/{ids['S001']}/ack", **{"HX-Request": "true"})
    assert r.status_code == 403 and r.json()["error"]


def test_assign_to_someone_who_covers_the_store_and_notes(console: ConsoleKit) -> None:
    ids = two_stores(console)
    cid = ids["S001"]
    colleague = console.add_user("agent", "S001", login="wang")
    console.add_user("store_manager", "S002", login="other-store")
    console.add_user("hq_analyst", login="analyst")  # reads, cannot act: not an assignee
    client = console.user("district_manager", "sh", login="boss")
    page = client.get(f"/console/cases/{cid}")
    options = re.findall(r'<option value="([^"]*)"', page.text.split('name="assignee"')[1].split("</select>")[0])
    assert "wang" in options and "boss" in options and "other-store" not in options and "analyst" not in options

    assert post(client, f"/console/cases/{cid}/assign", {"assignee": "other-store"}).status_code == 400
    assert post(client, f"/console/cases/{cid}/assign", {"assignee": "nobody-here"}).status_code == 400
    r = post(client, f"/console/cases/{cid}/assign", {"assignee": colleague})
    assert r.status_code == 303
    assert service_of(console).get(cid)["doc"]["assignee"] == "wang"
    assert "wang" in client.get("/console/cases").text

    assert post(client, f"/console/cases/{cid}/note", {"note": "   "}).status_code == 400
    assert post(client, f"/console/cases/{cid}/note", {"note": "x" * 2001}).status_code == 400
    r = post(client, f"/console/cases/{cid}/note", {"note": f"已致电 13812345678 {XSS}"})
    assert r.status_code == 303
    events = service_of(console).get(cid)["events"]
    assign = next(e for e in events if e["action"] == "assign")
    assert assign["actor"] == "boss" and assign["detail"]["to"] == "wang"
    note = next(e for e in events if e["action"] == "note")
    assert "13812345678" not in note["note"] and "138****5678" in note["note"]
    page = client.get(f"/console/cases/{cid}")
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    # unassign
    post(client, f"/console/cases/{cid}/assign", {"assignee": ""})
    assert "assignee" not in service_of(console).get(cid)["doc"]


def test_the_json_api_acts_too(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("store_manager", "S001")
    r = client.post(
        f"/console/api/cases/{ids['S001']}/ack",
        json={"note": "on it"},
        headers={"X-CSRF-Token": client.csrf},  # type: ignore[attr-defined]
    )
    assert r.status_code == 200 and r.json()["case"]["status"] == "acknowledged"
    detail = client.get(f"/console/api/cases/{ids['S001']}").json()
    assert detail["case"]["id"] == ids["S001"] and detail["events"][-1]["note"] == "on it"


# ------------------------------------------------------------------------------- escaping, PII


def test_a_script_in_the_review_is_escaped_everywhere(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001", text=f"太差了 {XSS} 电话 13812345678")
    [case] = service_of(console).list()
    client = console.user("admin")
    for url in ("/console/cases", "/console/cases/live", f"/console/cases/{case['id']}"):
        page = client.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, url
        assert "&lt;script&gt;alert" in page.text, url
        assert "13812345678" not in page.text and "138****5678" in page.text, url
    from hub.console.app import ConsoleApp
    from hub.console.scope import Principal

    app = ConsoleApp(console.rt)
    me = Principal.of(console.tree, user_id=1, login="a", display_name="a", role="admin", unit=None)
    [panel] = [p for p in console.rt.console.customer_panels if p.__module__.startswith("hub.features.feedback")]
    html = panel(app, me, case["customer_id"])
    assert f'href="/console/cases/{case["id"]}"' in html and "<script>alert" not in html


def test_exports_are_masked_audited_and_open_in_excel(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001", text='=HYPERLINK("http://x") 很差 13812345678')
    client = console.user("store_manager", "S001", login="exporter")
    r = client.get("/console/cases.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    text = r.content.decode("utf-8-sig")
    assert "13812345678" not in text and "138****5678" in text
    assert "工单号" in text.splitlines()[0]
    x = client.get("/console/cases.xlsx?state=all")
    assert x.status_code == 200
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(x.content)).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert len(values) == 2 and values[1][0] == service_of(console).list()[0]["id"]
    assert all("13812345678" not in str(v) for v in values[1])
    with console.rt.store.connect() as conn:
        rows = conn.execute(select(console_audit).where(console_audit.c.actor == "exporter")).mappings().all()
    exports = [(r["action"], r["detail"]["format"]) for r in rows if r["action"] == "export.cases"]
    assert exports == [("export.cases", "csv"), ("export.cases", "xlsx")]
    assert rows[-1]["detail"]["filters"] == {"state": "all"}


# ------------------------------------------------------------------------------------ live, tiles


def test_the_feed_row_commits_with_the_case(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001")
    [case] = service_of(console).list()
    with console.rt.store.connect() as conn:
        rows = conn.execute(select(console_feed).order_by(console_feed.c.id)).mappings().all()
    assert [(r["topic"], r["store"], r["ref"], r["data"]["action"]) for r in rows] == [
        ("cases", "S001", str(case["id"]), "opened")
    ]
    # a transition that rolls back leaves no feed row; one that commits leaves exactly one
    svc = service_of(console)
    with pytest.raises(RuntimeError), console.rt.store.begin() as conn:
        svc.transition(case["id"], "ack", actor="x", via="console", conn=conn)
        raise RuntimeError("the transaction fails after the change")
    assert status_of(console, case["id"]) == "new"
    client = console.user("store_manager", "S001")
    post(client, f"/console/cases/{case['id']}/ack")
    with console.rt.store.connect() as conn:
        rows = conn.execute(select(console_feed).order_by(console_feed.c.id)).mappings().all()
    assert [(r["ref"], r["data"]["action"], r["data"]["status"]) for r in rows] == [
        (str(case["id"]), "opened", "new"),
        (str(case["id"]), "ack", "acknowledged"),
    ]
    # a repeat of the same customer joins the case and is heard too
    console.ingest_review(2, store="S001")
    with console.rt.store.connect() as conn:
        last = conn.execute(select(console_feed).order_by(console_feed.c.id.desc())).mappings().first()
        n = conn.execute(select(cases.c.touchpoints).where(cases.c.id == case["id"])).scalar_one()
    assert n == 2 and last is not None and last["data"]["action"] == "joined"


def test_the_topics_tile_is_scoped(console: ConsoleKit) -> None:
    two_stores(console)
    mine = console.user("store_manager", "S002").get("/console/tiles/feedback-topics")
    assert mine.status_code == 200
    assert "配送/物流" in mine.text and "服务态度" not in mine.text
    assert '<script type="application/json" id="feedback-topics-chart">' in mine.text
    hq = console.user("admin").get("/console/tiles/feedback-topics")
    assert "配送/物流" in hq.text and "服务态度" in hq.text
    home = console.user("admin").get("/console/")
    assert "/console/tiles/feedback-sla" in home.text and "cx:cases from:body" in home.text


@pytest.mark.postgres
@pytest.mark.parametrize("console", ["postgresql"], indirect=True)
def test_scope_and_filters_on_postgresql(console: ConsoleKit) -> None:
    ids = two_stores(console)
    client = console.user("store_manager", "S002")
    assert rows_of(client.get("/console/cases?topic=delivery&severity=high").text) == {ids["S002"]}
    assert client.get(f"/console/cases/{ids['S001']}").status_code == 403
    api = client.get("/console/api/cases?limit=1").json()
    assert [c["id"] for c in api["cases"]] == [ids["S002"]] and api["next"] is None
    assert client.get("/console/tiles/feedback-sla").status_code == 200
    assert client.get("/console/tiles/feedback-topics").status_code == 200
