"""The console's audit log: admins only, newest first, filters by actor, action and dates (validated),
keyset pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from kit.console import ConsoleKit

from hub.console.accounts import audit


def seed(kit: ConsoleKit) -> None:
    """Five rows over five days (Shanghai dates 2026-11-18 .. 22) by two actors."""
    base = datetime(2026, 11, 18, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    with kit.rt.store.begin() as conn:
        for i, (actor, action) in enumerate(
            [
                ("alice", "export.touchpoints"),
                ("bob", "pii.reveal"),
                ("alice", "export.quarantine"),
                ("bob", "source.pause"),
                ("alice", "pii.reveal"),
            ]
        ):
            audit(conn, base + timedelta(days=i), actor, action, f"target:{i}", {"n": i}, store="S001")


def targets(html: str) -> list[str]:
    return re.findall(r"<td>(target:\d+)</td>", html)


def test_newest_first_and_filtered(console: ConsoleKit) -> None:
    seed(console)
    client = console.user("admin")
    page = client.get("/console/audit")
    assert page.status_code == 200
    assert targets(page.text) == ["target:4", "target:3", "target:2", "target:1", "target:0"]
    assert targets(client.get("/console/audit?actor=alice").text) == ["target:4", "target:2", "target:0"]
    assert targets(client.get("/console/audit?action=pii.reveal").text) == ["target:4", "target:1"]
    assert targets(client.get("/console/audit?action=export.").text) == ["target:2", "target:0"]
    dated = client.get("/console/audit?since=2026-11-19&until=2026-11-20")
    assert targets(dated.text) == ["target:2", "target:1"]
    assert targets(client.get("/console/audit?since=2026-11-22").text) == ["target:4"]


def test_pages_by_id(console: ConsoleKit) -> None:
    seed(console)
    client = console.user("admin")
    first = client.get("/console/audit?limit=2&actor=alice")
    assert targets(first.text) == ["target:4", "target:2"]
    nxt = re.search(r"before=(\d+)", first.text)
    assert nxt
    second = client.get(f"/console/audit?limit=2&actor=alice&before={nxt.group(1)}")
    assert targets(second.text) == ["target:0"]
    assert "before=" not in second.text.split("</table>")[1]


def test_the_json_api(console: ConsoleKit) -> None:
    seed(console)
    body = console.user("admin").get("/console/api/audit?action=pii.reveal").json()
    assert [r["target"] for r in body["rows"]] == ["target:4", "target:1"]
    assert body["rows"][0]["at"].startswith("2026-11-22T02:00")
    assert body["next_before"] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("since=2026-13-01", 400),
        ("until=yesterday", 400),
        ("since=2026-11-20&until=2026-11-19", 400),
        ("since=2024-01-01&until=2026-01-01", 400),
        ("limit=100000", 422),
        ("limit=0", 422),
        ("before=abc", 422),
        ("actor=" + "x" * 300, 422),
    ],
)
def test_bad_filters_are_a_4xx(console: ConsoleKit, query: str, status: int) -> None:
    r = console.user("admin").get(f"/console/audit?{query}")
    assert r.status_code == status, r.text
    if status == 400:
        assert "日期" in r.text


def test_a_bad_date_message_escapes_the_input(console: ConsoleKit) -> None:
    r = console.user("admin").get("/console/audit", params={"since": "<b>x</b>"})
    assert r.status_code == 400 and "<b>x</b>" not in r.text


@pytest.mark.parametrize(
    ("role", "unit"), [("store_manager", "S001"), ("hq_analyst", None), ("integrator", None), ("agent", "S001")]
)
def test_only_admins_read_the_audit(console: ConsoleKit, role: str, unit: str | None) -> None:
    seed(console)
    client = console.user(role, unit)
    assert client.get("/console/audit").status_code == 403
    assert client.get("/console/api/audit").status_code == 403
    assert "/console/audit" not in client.get("/console/customers").text
