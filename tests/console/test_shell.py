"""The console's shell: sign-in, the session, CSRF, the layout, the overview, the scope of roles."""

from __future__ import annotations

import pytest
from kit.console import PASSWORD, SUBTREE, ConsoleKit

from hub.console.scope import ScopeError


def test_sign_in_and_out(console: ConsoleKit) -> None:
    login = console.add_user("admin")
    client = console.login(login)
    page = client.get("/console/")
    assert page.status_code == 200
    assert "概览" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    r = client.post("/console/logout", data={"csrf": client.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303
    again = client.get("/console/")
    assert again.status_code == 303 and again.headers["location"].startswith("/console/login")


def test_a_wrong_password_is_refused_and_counted(console: ConsoleKit) -> None:
    login = console.add_user("admin")
    client = console.client()
    page = client.get("/console/login")
    token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    r = client.post("/console/login", data={"login": login, "password": "wrong-password!", "login_csrf": token})
    assert r.status_code == 401
    assert "账号或密码不正确" in r.text
    assert PASSWORD not in r.text


def test_unsafe_requests_need_the_session_csrf_token(console: ConsoleKit) -> None:
    client = console.user("admin")
    r = client.post("/console/logout-all", data={})
    assert r.status_code == 403
    r = client.post("/console/logout-all", data={"csrf": client.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303


def test_the_login_form_needs_its_own_token(console: ConsoleKit) -> None:
    login = console.add_user("admin")
    r = console.client().post("/console/login", data={"login": login, "password": PASSWORD})
    assert r.status_code == 403


def test_must_change_password_first(console: ConsoleKit) -> None:
    client = console.user("store_manager", "S001", must_change=True)
    r = client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/password"


@pytest.mark.parametrize("unit", sorted(SUBTREE))
def test_units_see_their_subtree(console: ConsoleKit, unit: str) -> None:
    from hub.console.scope import Principal

    kind = "store" if unit.startswith("S") else ("region" if unit in ("east", "south") else "district")
    role = {"store": "store_manager", "district": "district_manager", "region": "region_manager"}[kind]
    p = Principal.of(console.tree, user_id=1, login="x", display_name="x", role=role, unit=unit)
    assert p.stores == SUBTREE[unit]


def test_a_role_needs_the_right_unit(console: ConsoleKit) -> None:
    with pytest.raises(ScopeError, match="unknown store 'S999'"):
        console.tree.check("store_manager", "S999")
    with pytest.raises(ScopeError, match="needs a district"):
        console.tree.check("district_manager", None)
    with pytest.raises(ScopeError, match="HQ-wide"):
        console.tree.check("admin", "S001")


def test_an_integrator_reads_no_business_data(console: ConsoleKit) -> None:
    client = console.user("integrator")
    assert client.get("/console/").status_code == 403
