"""The admins' users page: add (generated password shown once), disable / enable, reset password,
end sessions, platform links, API tokens; audited; only for users.manage."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.console import PASSWORD, ConsoleKit
from sqlalchemy import select

from hub.console.accounts import Accounts
from hub.console.schema import console_audit


def post(client: TestClient, url: str, **data: Any) -> Any:
    return client.post(url, data={"csrf": client.csrf, **data})  # type: ignore[attr-defined]


def shown_secret(page: str) -> str:
    found = re.search(r'<code class="secret">([^<]+)</code>', page)
    assert found, page
    return found.group(1)


def audit_actions(kit: ConsoleKit, actor: str) -> list[str]:
    with kit.rt.store.connect() as conn:
        q = select(console_audit.c.action).where(console_audit.c.actor == actor).order_by(console_audit.c.id)
        return list(conn.execute(q).scalars())


@pytest.fixture
def admin(console: ConsoleKit) -> TestClient:
    return console.user("admin", login="root-admin")


def test_only_admins_see_the_page_and_the_menu(console: ConsoleKit, admin: TestClient) -> None:
    page = admin.get("/console/users")
    assert page.status_code == 200
    assert 'href="/console/users"' in page.text and "root-admin" in page.text
    assert "password_hash" not in page.text and "$argon2" not in page.text
    for role, unit in (("store_manager", "S001"), ("hq_analyst", None), ("integrator", None)):
        client = console.user(role, unit)
        assert client.get("/console/users").status_code == 403
        r = post(client, "/console/users", login="sneaky", role="admin")
        assert r.status_code == 403
        assert Accounts(console.rt.store).find_user("sneaky") is None
    home = console.user("store_manager", "S001").get("/console/")
    assert 'href="/console/users"' not in home.text


def test_add_a_user_with_a_generated_password(console: ConsoleKit, admin: TestClient) -> None:
    page = admin.get("/console/users")
    for unit in ("east", "sh", "S001", "S101"):
        assert f'value="{unit}"' in page.text  # the org tree in the unit select
    r = post(admin, "/console/users", login="wang.wu", name="王五", role="district_manager", unit="sh")
    assert r.status_code == 200, r.text
    password = shown_secret(r.text)
    assert len(password) >= 16
    user = Accounts(console.rt.store).require_user("wang.wu")
    assert (user.role, user.unit, user.display_name, user.must_change_password) == (
        "district_manager",
        "sh",
        "王五",
        True,
    )
    assert password not in admin.get("/console/users").text  # shown once
    client = console.client()
    form = client.get("/console/login").text
    token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    r = client.post("/console/login", data={"login": "wang.wu", "password": password, "login_csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/console/password"
    assert "user.add" in audit_actions(console, "root-admin")


@pytest.mark.parametrize(
    ("form", "status", "words"),
    [
        ({"login": "x1", "role": "store_manager", "unit": "S999"}, 422, "unknown store 'S999'"),
        ({"login": "x2", "role": "store_manager"}, 422, "needs a store"),
        ({"login": "x3", "role": "admin", "unit": "S001"}, 422, "HQ-wide"),
        ({"login": "x4", "role": "overlord"}, 422, "unknown role"),
        ({"login": "root-admin", "role": "admin"}, 409, "is taken"),
        ({"login": "has space", "role": "admin"}, 422, "no spaces"),
    ],
)
def test_a_bad_user_is_refused_with_the_reason(
    console: ConsoleKit, admin: TestClient, form: dict[str, str], status: int, words: str
) -> None:
    r = post(admin, "/console/users", **form)
    assert r.status_code == status
    assert words in r.text.replace("&#39;", "'")
    assert '<code class="secret">' not in r.text


@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_a_platform_only_user_has_no_password(console: ConsoleKit, admin: TestClient) -> None:
    r = post(admin, "/console/users", login="ding-only", role="agent", unit="S003", platform_only="1")
    assert r.status_code == 200 and '<code class="secret">' not in r.text
    uid = Accounts(console.rt.store).require_user("ding-only").id
    r = post(admin, f"/console/users/{uid}/link", provider="dingtalk", subject="union-123")
    assert r.status_code == 200
    assert "union-123" in r.text
    r = post(admin, f"/console/users/{uid}/link", provider="dingtalk", subject="union-123")
    assert r.status_code == 409
    r = post(admin, f"/console/users/{uid}/link", provider="github", subject="x")
    assert r.status_code == 422 and "unknown provider" in r.text
    r = post(admin, f"/console/users/{uid}/unlink", provider="dingtalk", subject="union-123")
    assert r.status_code == 200 and "union-123" not in r.text
    assert post(admin, f"/console/users/{uid}/unlink", provider="dingtalk", subject="union-123").status_code == 404


@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_disable_enable_reset_and_end_sessions(console: ConsoleKit, admin: TestClient) -> None:
    login = console.add_user("store_manager", "S002")
    uid = Accounts(console.rt.store).require_user(login).id
    browser = console.login(login)
    assert post(admin, f"/console/users/{uid}/logout").status_code == 200
    assert browser.get("/console/").status_code == 303
    browser = console.login(login)
    assert post(admin, f"/console/users/{uid}/disable").status_code == 200
    assert browser.get("/console/").status_code == 303
    assert Accounts(console.rt.store).get_user(uid).disabled
    assert post(admin, f"/console/users/{uid}/enable").status_code == 200
    browser = console.login(login)
    r = post(admin, f"/console/users/{uid}/password")
    assert r.status_code == 200
    new = shown_secret(r.text)
    assert browser.get("/console/").status_code == 303
    assert new != PASSWORD
    assert audit_actions(console, "root-admin")[-4:] == [
        "user.logout_all",
        "user.disable",
        "user.enable",
        "user.password_reset",
    ]


def test_an_admin_cannot_lock_themselves_out(console: ConsoleKit, admin: TestClient) -> None:
    me = Accounts(console.rt.store).require_user("root-admin")
    assert post(admin, f"/console/users/{me.id}/disable").status_code == 422
    assert post(admin, f"/console/users/{me.id}/password").status_code == 422
    assert admin.get("/console/users").status_code == 200


def test_tokens_from_the_page(console: ConsoleKit, admin: TestClient, clock: Any) -> None:
    login = console.add_user("hq_analyst")
    uid = Accounts(console.rt.store).require_user(login).id
    r = post(admin, f"/console/users/{uid}/tokens", name="bi export", days="30")
    assert r.status_code == 200
    token = shown_secret(r.text)
    assert token.startswith("cxt_")
    assert token not in admin.get("/console/users").text
    api = console.client()
    assert api.get("/console/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    tid = Accounts(console.rt.store).list_tokens(uid)[0].id
    assert post(admin, f"/console/users/tokens/{tid}/revoke").status_code == 200
    assert post(admin, f"/console/users/tokens/{tid}/revoke").status_code == 404
    assert api.get("/console/api/audit", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert post(admin, f"/console/users/{uid}/tokens", name="x", days="many").status_code == 422
    assert post(admin, f"/console/users/{uid}/tokens", name="", days="3").status_code == 422
    actions = audit_actions(console, "root-admin")
    assert "token.create" in actions and "token.revoke" in actions


@pytest.mark.parametrize("url", ["/console/users/99999/disable", "/console/users/abc/disable"])
def test_unknown_users_are_4xx(console: ConsoleKit, admin: TestClient, url: str) -> None:
    r = post(admin, url)
    assert r.status_code in (404, 422)


def test_users_page_pagination_and_english(console: ConsoleKit, admin: TestClient) -> None:
    assert admin.get("/console/users", params={"after": "x" * 500}).status_code == 400
    page = admin.get("/console/users", params={"after": "root-admin", "lang": "en"})
    assert page.status_code == 200 and "Add user" in page.text
    assert "root-admin</td>" not in page.text  # the page starts after it


def test_both_catalogues_have_the_same_keys() -> None:
    from pathlib import Path

    import yaml

    from hub.console.i18n import _flatten

    folder = Path(__file__).resolve().parents[2] / "hub" / "console" / "messages"
    zh = _flatten(yaml.safe_load((folder / "auth.zh.yaml").read_text(encoding="utf-8")))
    en = _flatten(yaml.safe_load((folder / "auth.en.yaml").read_text(encoding="utf-8")))
    assert set(zh) == set(en)
    for key, text in zh.items():
        assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", en[key])), key
