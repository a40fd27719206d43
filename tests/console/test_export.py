"""The console's exports (hub/console/export.py): CSV streamed with a BOM, Excel through openpyxl,
both masked, safe from formula injection, bounded; the pages' exports audited and scoped."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from kit.console import ConsoleKit
from openpyxl import load_workbook
from sqlalchemy import select

from hub.console.export import cell, csv_response, disposition, xlsx_bytes
from hub.console.schema import console_audit
from hub.privacy import mask_identity

COLUMNS = [("at", "时间"), ("text", "内容"), ("openid", "openid"), ("amount", "金额")]
ROWS = [
    {
        "at": datetime(2026, 11, 2, 2, 0, tzinfo=UTC),
        "text": "请打 13812345678 联系我，邮箱 alice@example.com",
        "openid": "oAbCdEfGhIjKlMn",
        "amount": Decimal("12.50"),
    },
    {"at": None, "text": '=HYPERLINK("http://evil")', "openid": "", "amount": 3},
]
MASKS = {"openid": lambda v: mask_identity("openid", v)}


def _csv(response: object) -> list[list[str]]:
    client = TestClient(_app(response))
    body = client.get("/").content
    assert body.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def _app(response: object) -> object:
    from fastapi import FastAPI

    app = FastAPI()
    app.get("/")(lambda: response)
    return app


def test_csv_is_masked_in_the_zone_and_safe_from_formulas() -> None:
    response = csv_response("触点", COLUMNS, iter(ROWS), zone=ZoneInfo("Asia/Shanghai"), masks=MASKS)
    assert response.headers["content-disposition"] == disposition("触点.csv")
    assert "filename*=UTF-8''%E8%A7%A6%E7%82%B9.csv" in response.headers["content-disposition"]
    rows = _csv(response)
    assert rows[0] == ["时间", "内容", "openid", "金额"]
    assert rows[1][0] == "2026-11-02 10:00:00"  # Shanghai time
    assert "13812345678" not in rows[1][1] and "138****5678" in rows[1][1]
    assert "alice@" not in rows[1][1] and "a***@example.com" in rows[1][1]
    assert rows[1][2] == "oAbC…Mn"
    assert rows[1][3] == "12.5"
    assert rows[2][1].startswith("'=")  # a spreadsheet shows it as text, never runs it
    assert rows[2][0] == ""


def test_csv_stops_at_max_rows_and_says_so() -> None:
    many = ({"at": None, "text": str(i), "openid": "", "amount": i} for i in range(10))
    rows = _csv(csv_response("x", COLUMNS, many, max_rows=3))
    assert len(rows) == 1 + 3 + 1
    assert "more than 3 rows" in rows[-1][0]


def test_xlsx_has_a_bold_header_and_masked_cells() -> None:
    data = xlsx_bytes(COLUMNS, ROWS, zone=ZoneInfo("Asia/Shanghai"), masks=MASKS, sheet="触点")
    ws = load_workbook(io.BytesIO(data)).active
    assert ws.title == "触点"
    values = [[c.value for c in row] for row in ws.iter_rows()]
    assert values[0] == ["时间", "内容", "openid", "金额"]
    assert ws["A1"].font.bold
    assert values[1][0] == "2026-11-02 10:00:00"
    assert "138****5678" in values[1][1]
    assert values[1][2] == "oAbC…Mn"
    assert values[1][3] == 12.5
    assert values[2][1].startswith("'=")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"mobile": "13812345678", "sku": "A1"}, '{"mobile":"138****5678","sku":"A1"}'),
        (True, "1"),
        ("+86 138", "'+86 138"),
        ("-1", "'-1"),
        (-1, -1),
    ],
)
def test_cells(value: object, shown: object) -> None:
    assert cell(value) == shown


def test_disposition_has_an_ascii_fallback() -> None:
    assert disposition("客户 S001.csv").startswith("attachment; filename=\"___S001.csv\"; filename*=UTF-8''")


# -------------------------------------------------------------------- the pages' exports


def _exports(console: ConsoleKit) -> list[dict[str, object]]:
    with console.rt.store.connect() as conn:
        rows = conn.execute(select(console_audit).where(console_audit.c.action.like("export.%"))).mappings()
        return [dict(r) for r in rows]


def _customer_of(console: ConsoleKit, store: str) -> str:
    from hub.store.schema import touchpoints

    with console.rt.store.connect() as conn:
        cid = conn.execute(select(touchpoints.c.customer_id).where(touchpoints.c.store == store)).scalar()
    assert cid
    return str(cid)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_customers_touchpoints_export_is_masked_and_audited(console: ConsoleKit, fmt: str) -> None:
    console.ingest_review(1, store="S001", text="回电 13912345678", member="M777")
    cid = _customer_of(console, "S001")
    client = console.user("store_manager", "S001")
    r = client.get(f"/console/customers/{cid}/touchpoints.{fmt}")
    assert r.status_code == 200, r.text
    body = r.content if fmt == "xlsx" else r.content.decode("utf-8-sig").encode()
    assert b"13912345678" not in body
    if fmt == "csv":
        assert "139****5678" in r.content.decode("utf-8-sig")
    else:
        ws = load_workbook(io.BytesIO(r.content)).active
        assert any("139****5678" in str(c.value) for row in ws.iter_rows() for c in row)
    audit = _exports(console)
    assert [(a["action"], a["target"], a["detail"]["format"]) for a in audit] == [
        ("export.touchpoints", f"customer:{cid}", fmt)
    ]
    assert "139" not in str(audit[0]["detail"])


def test_another_stores_manager_cannot_export_a_customer(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001", member="M100")
    cid = _customer_of(console, "S001")
    client = console.user("store_manager", "S002")
    r = client.get(f"/console/customers/{cid}/touchpoints.csv")
    assert r.status_code == 404
    assert _exports(console) == []


def test_an_agent_may_not_export(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001", member="M100")
    cid = _customer_of(console, "S001")
    r = console.user("agent", "S001").get(f"/console/customers/{cid}/touchpoints.csv")
    assert r.status_code == 403


def test_an_unknown_format_is_a_400(console: ConsoleKit) -> None:
    console.ingest_review(1, store="S001", member="M100")
    cid = _customer_of(console, "S001")
    r = console.user("admin").get(f"/console/customers/{cid}/touchpoints.pdf")
    assert r.status_code in (400, 404)


def test_the_quarantine_export_needs_ops_read_and_is_masked(console: ConsoleKit) -> None:
    bad = {"review_id": "bad-1", "created_at": "2026-11-22T10:00:00+08:00", "rating": "five"}
    console.ingest("reviews", "generic_review", {**bad, "mobile": "13812345678", "store_code": "S001"})
    assert console.user("store_manager", "S001").get("/console/quarantine.csv").status_code == 403
    r = console.user("integrator").get("/console/quarantine.csv")
    assert r.status_code == 200
    text = r.content.decode("utf-8-sig")
    assert "13812345678" not in text and "138****5678" in text
    assert [a["action"] for a in _exports(console)] == ["export.quarantine"]


def test_a_process_writes_one_export_at_a_time_and_says_503_when_busy(
    console: ConsoleKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second download waits for the first; one that waits too long is a 503 with a message, not
    audited, and the slot is free again once the first is written."""
    from hub.console import export

    console.ingest_review(1, store="S001", text="回电 13912345678", member="M777")
    cid = _customer_of(console, "S001")
    client = console.user("admin")
    monkeypatch.setattr(export, "WAIT_SECONDS", 0.05)
    held = export._Turn()  # another download being written
    try:
        r = client.get(f"/console/customers/{cid}/touchpoints.csv", headers={"accept": "application/json"})
        assert r.status_code == 503 and "try again" in r.json()["error"]
        assert _exports(console) == []
    finally:
        held.release()
    for fmt in ("csv", "xlsx", "csv"):  # each one gives its slot back, streamed or not
        r = client.get(f"/console/customers/{cid}/touchpoints.{fmt}")
        assert r.status_code == 200, r.text
    assert len(_exports(console)) == 3


def test_an_export_pauses_for_the_other_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are written in runs of YIELD_EVERY with a pause between: the interpreter goes to the
    other requests' threads during a long download."""
    from hub.console import export

    pauses: list[float] = []
    monkeypatch.setattr(export.time, "sleep", pauses.append)
    rows = [{"text": f"r{i}"} for i in range(export.YIELD_EVERY * 4)]
    lines = list(export._cells([("text", "t")], rows, None, {}, 10**6))
    assert len(lines) == len(rows) + 1 and len(pauses) == 4
