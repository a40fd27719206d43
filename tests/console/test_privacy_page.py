"""The console's forget page (/console/privacy): admins only, a dry-run preview of the counts, then
a confirmed POST (CSRF) that forgets and is audited; values never in a URL; bad input is a 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.console import ConsoleKit
from kit.privacy import OPENID, OTHER_PHONE, PHONE, privacy_hub, tables_holding
from sqlalchemy import MetaData, select

from hub.console.schema import console_audit
from hub.store import Store


@pytest.fixture
def kit(tmp_path: Path, store: Store, clock: Any) -> Iterator[ConsoleKit]:
    h = privacy_hub(tmp_path, store, clock)
    h.fill()
    k = ConsoleKit(h.rt)
    try:
        yield k
    finally:
        h.rt.close()


def snapshot(store: Store) -> dict[str, Any]:
    md = MetaData()
    md.reflect(store.engine)
    with store.connect() as conn:
        return {
            t.name: sorted(map(repr, conn.execute(select(t)).all()))
            for t in md.sorted_tables
            if t.name not in ("console_audit", "console_sessions", "console_login_attempts", "console_users")
        }


def test_only_admins_see_the_page_and_its_menu_entry(kit: ConsoleKit) -> None:
    admin = kit.user("admin")
    page = admin.get("/console/privacy")
    assert page.status_code == 200 and "删除顾客个人信息" in page.text
    assert 'href="/console/privacy"' in page.text
    for role, unit in (("hq_analyst", None), ("store_manager", "S001"), ("integrator", None)):
        other = kit.user(role, unit)
        assert other.get("/console/privacy").status_code == 403
        r = other.post(
            "/console/privacy/forget", data={"csrf": other.csrf, "by": "phone", "value": PHONE, "confirm": "yes"}
        )  # type: ignore[attr-defined]
        assert r.status_code == 403
        assert 'href="/console/privacy"' not in other.get("/console/").text
    assert tables_holding(kit.rt.store, OPENID)


def test_preview_then_confirm_forgets_and_audits(kit: ConsoleKit) -> None:
    admin = kit.user("admin", login="dpo")
    before = snapshot(kit.rt.store)
    form = {"csrf": admin.csrf, "by": "phone", "value": PHONE}  # type: ignore[attr-defined]
    preview = admin.post("/console/privacy/preview", data=form)
    assert preview.status_code == 200, preview.text
    assert "identities" in preview.text and "将删除 1 位顾客" in preview.text and 'name="confirm"' in preview.text
    assert snapshot(kit.rt.store) == before  # a preview changes nothing

    unconfirmed = admin.post("/console/privacy/forget", data=form)
    assert unconfirmed.status_code == 400 and "请勾选确认" in unconfirmed.text
    assert snapshot(kit.rt.store) == before

    done = admin.post("/console/privacy/forget", data={**form, "confirm": "yes"})
    assert done.status_code == 200, done.text
    assert "已删除 1 位顾客的个人信息" in done.text and "fg-" in done.text
    assert tables_holding(kit.rt.store, PHONE) == {} and tables_holding(kit.rt.store, OPENID) == {}
    assert tables_holding(kit.rt.store, OTHER_PHONE)  # not the other customer
    with kit.rt.store.connect() as conn:
        rows = (
            conn.execute(select(console_audit).where(console_audit.c.action.in_(("privacy.forget", "privacy.preview"))))
            .mappings()
            .all()
        )
    assert sorted(r["action"] for r in rows) == ["privacy.forget", "privacy.preview"]
    forget_row = next(r for r in rows if r["action"] == "privacy.forget")
    assert forget_row["actor"] == "dpo" and forget_row["detail"]["via"] == "console"
    assert forget_row["target"] in done.text
    for r in rows:
        assert PHONE not in repr(dict(r)) and OPENID not in repr(dict(r))


def test_the_english_page(kit: ConsoleKit) -> None:
    admin = kit.user("admin")
    page = admin.get("/console/privacy?lang=en")
    assert "Forget a customer" in page.text


def test_csrf_is_required(kit: ConsoleKit) -> None:
    admin = kit.user("admin")
    r = admin.post("/console/privacy/forget", data={"by": "phone", "value": PHONE, "confirm": "yes"})
    assert r.status_code == 403
    assert tables_holding(kit.rt.store, OPENID)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"by": "phone", "value": "12345"}, "手机号格式不正确"),
        ({"by": "phone", "value": "13700000000"}, "没有找到这位顾客"),
        ({"by": "customer", "value": "nobody"}, "没有找到这位顾客"),
        ({"by": "openid", "value": OPENID, "scope": "another-app"}, "没有找到这位顾客"),
        ({"by": "email", "value": "x@example.com"}, "请选择查找方式"),
        ({"by": "phone", "value": ""}, "请输入要查找的值"),
        ({"by": "phone", "value": "1" * 500}, "请输入要查找的值"),
    ],
)
def test_bad_input_is_a_clear_400(kit: ConsoleKit, data: dict[str, str], message: str) -> None:
    admin = kit.user("admin")
    r = admin.post("/console/privacy/preview", data={"csrf": admin.csrf, **data})  # type: ignore[attr-defined]
    assert r.status_code == 400 and message in r.text
