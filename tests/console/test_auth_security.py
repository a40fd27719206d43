"""Sign-in under attack: session fixation, brute force, CSRF, stolen sessions (logout everywhere,
idle and absolute expiry), disabled users, open redirects, weak passwords, account enumeration."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.console import PASSWORD, ConsoleKit, console_routes

from hub.console.accounts import Accounts
from hub.console.app import UNSAFE

NEW_PASSWORD = "a much better passphrase"


def login_form(client: TestClient, nxt: str = "/console/") -> dict[str, str]:
    page = client.get("/console/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token, page.text
    return {"login_csrf": token.group(1), "next": nxt}


def try_login(client: TestClient, login: str, password: str, nxt: str = "/console/") -> Any:
    return client.post("/console/login", data={**login_form(client, nxt), "login": login, "password": password})


def user_id(kit: ConsoleKit, login: str) -> int:
    return Accounts(kit.rt.store).require_user(login).id


# -- session fixation ---------------------------------------------------------------------------


def test_a_planted_cookie_is_not_the_session_after_login(console: ConsoleKit) -> None:
    login = console.add_user("admin")
    client = console.client()
    client.cookies.set("cxhub_console", "attacker-chosen-session-id", path="/console")
    r = try_login(client, login, PASSWORD)
    assert r.status_code == 303
    sid = r.cookies.get("cxhub_console")
    assert sid and sid != "attacker-chosen-session-id"
    attacker = console.client()
    attacker.cookies.set("cxhub_console", "attacker-chosen-session-id", path="/console")
    assert attacker.get("/console/").status_code == 303  # the planted id signs nobody in


def test_every_login_makes_a_new_session_id(console: ConsoleKit) -> None:
    login = console.add_user("admin")
    client = console.client()
    first = try_login(client, login, PASSWORD).cookies.get("cxhub_console")
    second = try_login(client, login, PASSWORD).cookies.get("cxhub_console")
    assert first and second and first != second
    cookie = try_login(client, login, PASSWORD).headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower() and "path=/console" in cookie.lower()


# -- brute force --------------------------------------------------------------------------------


@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_a_login_is_throttled_after_its_failures(console: ConsoleKit, clock: Any) -> None:
    limit = console.rt.config.raw.console.login_attempts
    login = console.add_user("admin")
    client = console.client()
    for _ in range(limit):
        assert try_login(client, login, "wrong password 123").status_code == 401
    r = try_login(client, login, PASSWORD)
    assert r.status_code == 429
    assert "cxhub_console" not in r.cookies
    assert "尝试次数过多" in r.text
    other = console.add_user("admin")  # another login from the same address is not locked out yet
    assert try_login(client, other, PASSWORD).status_code == 303
    clock.advance(minutes=console.rt.config.raw.console.login_window_minutes + 1)
    assert try_login(client, login, PASSWORD).status_code == 303


def test_an_address_is_throttled_after_failures_on_many_logins(console: ConsoleKit, clock: Any) -> None:
    limit = console.rt.config.raw.console.login_attempts
    victim = console.add_user("admin")
    client = console.client()
    for i in range(3 * limit):  # spraying: one try each on many (mostly unknown) logins
        assert try_login(client, f"guess-{i}", "Password123!").status_code == 401
    assert try_login(client, victim, PASSWORD).status_code == 429
    clock.advance(minutes=console.rt.config.raw.console.login_window_minutes + 1)
    assert try_login(client, victim, PASSWORD).status_code == 303


# -- CSRF ---------------------------------------------------------------------------------------

#: the modules of the core's own routes (features test theirs)
CORE = ("hub.console.app", "hub.console.users", "hub.console.auth")


def core_unsafe_routes(kit: ConsoleKit) -> list[tuple[str, str]]:
    out = []
    for route in console_routes(kit.app):
        if route.endpoint.rsplit(".", 1)[0] not in CORE or route.method not in UNSAFE:
            continue
        if route.path != "/console/login":  # the sign-in form has its own token (test_shell.py)
            out.append((route.method, route.path))
    return out


def test_every_unsafe_core_route_needs_the_session_csrf_token(console: ConsoleKit) -> None:
    victim = console.add_user("store_manager", "S001")
    vid = user_id(console, victim)
    admin = console.user("admin")
    other = console.user("admin")  # a valid token, but of another session
    routes = core_unsafe_routes(console)
    paths = {p for _, p in routes}
    assert {"/console/logout", "/console/logout-all", "/console/password", "/console/users"} <= paths
    assert "/console/users/{user_id}/disable" in paths and "/console/users/tokens/{token_id}/revoke" in paths
    for method, path in routes:
        url = path.replace("{user_id}", str(vid)).replace("{token_id}", "1")
        for data in ({}, {"csrf": "forged"}, {"csrf": other.csrf}):  # type: ignore[attr-defined]
            r = admin.request(
                method,
                url,
                data={**data, "login": "x1", "role": "admin", "name": "n", "provider": "dingtalk", "subject": "s"},
            )
            assert r.status_code == 403, (method, url, data, r.status_code)
        r = admin.request(method, url, headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403, (method, url)
    # nothing happened: the victim is enabled, has no link, no token; the admin is still signed in
    accounts = Accounts(console.rt.store)
    assert not accounts.get_user(vid).disabled and not accounts.get_user(vid).must_change_password
    assert accounts.links_of([vid])[vid] == [] and accounts.list_tokens() == []
    assert accounts.find_user("x1") is None
    assert admin.get("/console/").status_code == 200


def test_the_csrf_header_of_htmx_is_accepted(console: ConsoleKit) -> None:
    victim = console.add_user("store_manager", "S001")
    admin = console.user("admin")
    r = admin.post(
        f"/console/users/{user_id(console, victim)}/logout",
        headers={"X-CSRF-Token": admin.csrf},  # type: ignore[attr-defined]
    )
    assert r.status_code == 200


# -- sessions that end --------------------------------------------------------------------------


@pytest.mark.parametrize("console", ["sqlite", "postgresql"], indirect=True)
def test_logout_everywhere_ends_the_other_browsers(console: ConsoleKit) -> None:
    login = console.add_user("store_manager", "S001")
    laptop, phone = console.login(login), console.login(login)
    assert phone.get("/console/").status_code == 200
    r = laptop.post("/console/logout-all", data={"csrf": laptop.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303
    for client in (laptop, phone):
        r = client.get("/console/")
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    assert Accounts(console.rt.store).sessions_of(user_id(console, login)) == 0


def test_logout_ends_only_this_browser(console: ConsoleKit) -> None:
    login = console.add_user("store_manager", "S001")
    laptop, phone = console.login(login), console.login(login)
    laptop.post("/console/logout", data={"csrf": laptop.csrf})  # type: ignore[attr-defined]
    assert laptop.get("/console/").status_code == 303
    assert phone.get("/console/").status_code == 200


def test_an_idle_session_ends(console: ConsoleKit, clock: Any) -> None:
    idle = console.rt.config.raw.console.idle_minutes
    client = console.user("store_manager", "S001")
    clock.advance(minutes=idle - 1)
    assert client.get("/console/").status_code == 200  # activity moves the idle clock on
    clock.advance(minutes=idle - 1)
    assert client.get("/console/").status_code == 200
    clock.advance(minutes=idle + 1)
    r = client.get("/console/")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_a_busy_session_still_ends_at_its_absolute_expiry(console: ConsoleKit, clock: Any) -> None:
    hours = console.rt.config.raw.console.session_hours
    client = console.user("store_manager", "S001")
    for _ in range(int(hours * 2) - 1):  # every 30 minutes, never idle
        clock.advance(minutes=30)
        assert client.get("/console/").status_code == 200
    clock.advance(minutes=30)
    assert client.get("/console/").status_code == 303


def test_a_disabled_user_is_out_at_once_and_cannot_sign_in(console: ConsoleKit) -> None:
    login = console.add_user("store_manager", "S001")
    client = console.login(login)
    Accounts(console.rt.store).set_disabled(user_id(console, login), True, actor="test")
    assert client.get("/console/").status_code == 303
    r = try_login(console.client(), login, PASSWORD)
    assert r.status_code == 401 and "账号或密码不正确" in r.text
    Accounts(console.rt.store).set_disabled(user_id(console, login), False, actor="test")
    assert try_login(console.client(), login, PASSWORD).status_code == 303


# -- where the browser goes next ----------------------------------------------------------------

EVIL_NEXT = (
    "https://evil.example/",
    "//evil.example/console/",
    "/\\evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "/console@evil.example",
    "https://testserver.evil.example/console/",
    "/other-app/",
)


@pytest.mark.parametrize("nxt", EVIL_NEXT)
def test_next_never_leaves_the_console(console: ConsoleKit, nxt: str) -> None:
    login = console.add_user("admin")
    client = console.client()
    page = client.get("/console/login", params={"next": nxt})
    assert 'name="next" value="/console/"' in page.text
    r = try_login(client, login, PASSWORD, nxt=nxt)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/"


def test_next_inside_the_console_is_kept(console: ConsoleKit) -> None:
    login = console.add_user("admin")
    r = try_login(console.client(), login, PASSWORD, nxt="/console/audit?actor=x")
    assert r.headers["location"] == "/console/audit?actor=x"


# -- passwords ----------------------------------------------------------------------------------


def change(client: TestClient, current: str, new: str, again: str | None = None) -> Any:
    data = {"csrf": client.csrf, "current": current, "new": new, "again": again if again is not None else new}  # type: ignore[attr-defined]
    return client.post("/console/password", data=data)


def test_the_first_password_must_be_changed_and_weak_ones_are_refused(console: ConsoleKit) -> None:
    login = console.add_user("store_manager", "S001", must_change=True)
    client = console.client()
    r = try_login(client, login, PASSWORD)
    assert r.headers["location"] == "/console/password"
    page = client.get("/console/password")
    client.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[attr-defined,union-attr]
    assert client.get("/console/").headers["location"] == "/console/password"
    for weak in ("short1!", f"{login}-2026!", "aaaaaaaaaaaaaa", "abababababab"):
        r = change(client, PASSWORD, weak)
        assert r.status_code == 422, weak
    assert change(client, PASSWORD, NEW_PASSWORD, "something else 123").status_code == 422
    assert change(client, "not the current one", NEW_PASSWORD).status_code == 422
    assert client.get("/console/").status_code == 303  # still must change
    assert change(client, PASSWORD, NEW_PASSWORD).status_code == 200
    assert client.get("/console/").status_code == 200
    assert try_login(console.client(), login, PASSWORD).status_code == 401
    assert try_login(console.client(), login, NEW_PASSWORD).status_code == 303


def test_a_reset_password_ends_sessions_and_must_be_changed(console: ConsoleKit) -> None:
    login = console.add_user("store_manager", "S001")
    client = console.login(login)
    new = Accounts(console.rt.store).reset_password(user_id(console, login), actor="test")
    assert len(new) >= 16
    assert client.get("/console/").status_code == 303
    assert try_login(console.client(), login, PASSWORD).status_code == 401
    r = try_login(console.client(), login, new)
    assert r.status_code == 303 and r.headers["location"] == "/console/password"


# -- enumeration --------------------------------------------------------------------------------


def _answer(r: Any) -> tuple[int, str]:
    body = re.sub(r'name="login_csrf" value="[^"]+"', "", r.text)
    return r.status_code, body


def test_the_login_page_does_not_tell_whether_a_login_exists(console: ConsoleKit) -> None:
    real = console.add_user("admin", login="real-admin")
    disabled = console.add_user("admin", login="gone-admin")
    Accounts(console.rt.store).set_disabled(user_id(console, disabled), True, actor="test")
    platform_only = "linked-only"
    Accounts(console.rt.store).add_user(platform_only, role="admin", tree=console.tree, password=None)
    answers = {
        "wrong password": _answer(try_login(console.client(), real, "wrong password 1")),
        "unknown login": _answer(try_login(console.client(), "nobody-here", "wrong password 1")),
        "disabled": _answer(try_login(console.client(), disabled, PASSWORD)),
        "no password": _answer(try_login(console.client(), platform_only, "wrong password 1")),
    }
    statuses = {s for s, _ in answers.values()}
    assert statuses == {401}
    assert len({b for _, b in answers.values()}) == 1, "the pages differ"
