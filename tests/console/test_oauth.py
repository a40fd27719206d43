"""Sign-in through DingTalk, Feishu and WeCom, against local fakes of their OAuth APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from kit.console import ConsoleKit, console_config
from kit.oauth_fakes import APPS, OAuthFakes, Person, oauth_config
from kit.runtime import build_runtime
from sqlalchemy import select

from hub.console.accounts import Accounts
from hub.console.schema import console_audit, console_sessions

PROVIDERS = ("dingtalk", "feishu", "wecom")


@pytest.fixture
def fakes() -> OAuthFakes:
    return OAuthFakes()


@pytest.fixture(params=["sqlite"])
def kit(request: pytest.FixtureRequest, tmp_path: Path, clock: Any, fakes: OAuthFakes) -> Iterator[ConsoleKit]:
    """A console whose three platforms are the fakes (parametrise indirectly with "postgresql")."""
    if request.param == "postgresql":
        db = request.getfixturevalue("pg_store").url
    else:
        db = f"sqlite:///{tmp_path / 'console.db'}"
    cfg = console_config(db, extra={"console": {"oauth": oauth_config()}})
    rt = build_runtime(cfg, path=tmp_path / "cxhub.yaml", clock=clock, transport=httpx.MockTransport(fakes.handler))
    try:
        yield ConsoleKit(rt)
    finally:
        rt.close()


def linked_user(kit: ConsoleKit, provider: str, subject: str, **kwargs: Any) -> int:
    login = kit.add_user("store_manager", "S001", **kwargs)
    accounts = Accounts(kit.rt.store)
    user = accounts.require_user(login)
    accounts.link(user.id, provider, subject, actor="test")
    return user.id


def start(client: TestClient, provider: str, nxt: str = "/console/") -> str:
    r = client.get(f"/console/oauth/{provider}", params={"next": nxt})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def sign_in(kit: ConsoleKit, fakes: OAuthFakes, provider: str, person: Person, nxt: str = "/console/") -> Any:
    client = kit.client()
    callback = fakes.consent(start(client, provider, nxt), person)
    return client, client.get(callback)


# the id a link names on each platform, for the default person
SUBJECT = {"dingtalk": "union-zhang", "feishu": "zhangsan", "wecom": "zhangsan"}


@pytest.mark.parametrize("kit", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_linked_person_signs_in(kit: ConsoleKit, fakes: OAuthFakes, provider: str) -> None:
    uid = linked_user(kit, provider, SUBJECT[provider])
    client, r = sign_in(kit, fakes, provider, Person(), nxt="/console/?from=oauth")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/?from=oauth"
    assert client.get("/console/").status_code == 200
    with kit.rt.store.connect() as conn:
        via = conn.execute(select(console_sessions.c.via).where(console_sessions.c.user_id == uid)).scalars().all()
        audit = conn.execute(select(console_audit.c.detail).where(console_audit.c.action == "login.ok")).scalars().all()
    assert via == [provider]
    assert {"via": provider, "address": "testclient"} in audit


@pytest.mark.parametrize(
    ("provider", "subject"),
    [("dingtalk", "open-zhang"), ("feishu", "open-zhang"), ("feishu", "union-zhang")],
)
def test_a_link_may_name_any_id_the_platform_gives(
    kit: ConsoleKit, fakes: OAuthFakes, provider: str, subject: str
) -> None:
    linked_user(kit, provider, subject)
    _, r = sign_in(kit, fakes, provider, Person())
    assert r.status_code == 303 and r.headers["location"] == "/console/"


def test_the_authorize_urls_carry_the_apps_identity(kit: ConsoleKit) -> None:
    client = kit.client()
    for provider in PROVIDERS:
        q = parse_qs(urlsplit(start(client, provider)).query)
        assert q["redirect_uri"] == [f"http://testserver/console/oauth/{provider}/callback"]
        assert q["state"][0]
        assert APPS[provider]["client_secret"] not in start(client, provider)
    q = parse_qs(urlsplit(start(client, "wecom")).query)
    assert q["appid"] == ["ww-corp-1"] and q["agentid"] == ["1000002"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unlinked_person_is_refused_and_no_account_is_made(
    kit: ConsoleKit, fakes: OAuthFakes, provider: str
) -> None:
    linked_user(kit, provider, SUBJECT[provider])
    before = len(Accounts(kit.rt.store).list_users())
    stranger = Person(union_id="u-x", open_id="o-x", user_id="lisi")
    client, r = sign_in(kit, fakes, provider, stranger)
    assert r.status_code == 403
    assert "尚未绑定" in r.text
    assert "cxhub_console" not in r.cookies
    assert len(Accounts(kit.rt.store).list_users()) == before
    assert client.get("/console/").status_code == 303


def test_a_wecom_outsider_is_not_linked(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "wecom", "open-zhang")  # an openid in a link signs no outsider in
    _, r = sign_in(kit, fakes, "wecom", Person(member=False))
    assert r.status_code == 403


def test_a_disabled_user_is_refused(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    uid = linked_user(kit, "feishu", "zhangsan")
    Accounts(kit.rt.store).set_disabled(uid, True, actor="test")
    _, r = sign_in(kit, fakes, "feishu", Person())
    assert r.status_code == 403 and "已停用" in r.text


@pytest.mark.parametrize("kit", ["sqlite", "postgresql"], indirect=True)
def test_the_state_is_good_once(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "dingtalk", "union-zhang")
    client = kit.client()
    authorize = start(client, "dingtalk")
    first = client.get(fakes.consent(authorize, Person()))
    assert first.status_code == 303
    # the same state again, even with its cookie put back (the first answer deleted it) and a
    # fresh code: refused
    again = kit.client()
    again.cookies.set("cxhub_console_oauth", _cookie_of(kit, fakes, authorize), path="/console/oauth")
    r = again.get(fakes.consent(authorize, Person()))
    assert r.status_code == 400
    assert "已使用" in r.text


def _cookie_of(kit: ConsoleKit, fakes: OAuthFakes, authorize: str) -> str:
    from hub.console.auth import StateSigner

    state = parse_qs(urlsplit(authorize).query)["state"][0]
    opened = StateSigner(kit.rt.config.secret_key).open(state)
    assert opened is not None
    return opened[1]


def test_a_state_from_another_browser_is_refused(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "dingtalk", "union-zhang")
    victim, attacker = kit.client(), kit.client()
    authorize = start(attacker, "dingtalk")  # the attacker's state, in a link sent to the victim
    r = victim.get(fakes.consent(authorize, Person()))
    assert r.status_code == 400
    assert "cxhub_console" not in r.cookies


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),  # the signature
        lambda s: "x" + s,  # the payload
        lambda s: "",
        lambda s: "no-dot",
    ],
)
def test_a_forged_state_is_refused(kit: ConsoleKit, fakes: OAuthFakes, tamper: Any) -> None:
    linked_user(kit, "dingtalk", "union-zhang")
    client = kit.client()
    callback = fakes.consent(start(client, "dingtalk"), Person())
    path, _, query = callback.partition("?")
    q = {k: v[0] for k, v in parse_qs(query).items()}
    q["state"] = tamper(q["state"])
    r = client.get(path, params=q)
    assert r.status_code == 400


def test_a_state_of_another_provider_is_refused(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "feishu", "zhangsan")
    client = kit.client()
    callback = fakes.consent(start(client, "dingtalk"), Person())
    r = client.get(callback.replace("/oauth/dingtalk/", "/oauth/feishu/").replace("authCode=", "code="))
    assert r.status_code == 400


def test_an_old_state_is_refused(kit: ConsoleKit, fakes: OAuthFakes, clock: Any) -> None:
    linked_user(kit, "dingtalk", "union-zhang")
    client = kit.client()
    callback = fakes.consent(start(client, "dingtalk"), Person())
    clock.advance(minutes=11)
    r = client.get(callback)
    assert r.status_code == 400 and "过期" in r.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_or_used_code_is_a_clear_400(kit: ConsoleKit, fakes: OAuthFakes, provider: str) -> None:
    linked_user(kit, provider, SUBJECT[provider])
    client = kit.client()
    callback = fakes.consent(start(client, provider), Person())
    code_name = "authCode" if provider == "dingtalk" else "code"
    path, _, query = callback.partition("?")
    q = {k: v[0] for k, v in parse_qs(query).items()}
    q[code_name] = "made-up-code"
    r = client.get(path, params=q)
    assert r.status_code == 400
    assert "拒绝" in r.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_app_secret_is_a_502_that_shows_no_secret(
    tmp_path: Path, clock: Any, fakes: OAuthFakes, provider: str
) -> None:
    oauth = oauth_config()
    oauth[provider]["client_secret"] = "wrong-secret-value-123"
    cfg = console_config(f"sqlite:///{tmp_path / 'c.db'}", extra={"console": {"oauth": oauth}})
    rt = build_runtime(cfg, path=tmp_path / "cxhub.yaml", clock=clock, transport=httpx.MockTransport(fakes.handler))
    try:
        kit = ConsoleKit(rt)
        linked_user(kit, provider, SUBJECT[provider])
        _, r = sign_in(kit, fakes, provider, Person())
        assert r.status_code == 502
        assert "wrong-secret-value-123" in fakes.seen_secrets  # the fake did check it
        assert "wrong-secret-value-123" not in r.text
        assert "暂时无法完成登录" in r.text
    finally:
        rt.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_platform_that_times_out_or_fails(kit: ConsoleKit, fakes: OAuthFakes, provider: str) -> None:
    linked_user(kit, provider, SUBJECT[provider])
    fakes.timeout_next = 1
    _, r = sign_in(kit, fakes, provider, Person())
    assert r.status_code == 504 and "超时" in r.text
    fakes.fail_next = 1
    _, r = sign_in(kit, fakes, provider, Person())
    assert r.status_code == 502
    assert "Bad Gateway" not in r.text
    _, r = sign_in(kit, fakes, provider, Person())  # and then it works again
    assert r.status_code == 303


def test_a_cancelled_consent_and_an_unknown_provider(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    client = kit.client()
    callback = fakes.consent(start(client, "feishu"), Person())
    path, _, query = callback.partition("?")
    state = parse_qs(query)["state"][0]
    r = client.get(path, params={"state": state, "error": "access_denied"})
    assert r.status_code == 400
    assert client.get("/console/oauth/github").status_code == 404
    assert client.get("/console/oauth/github/callback?code=x&state=y").status_code == 404


def test_next_is_kept_inside_the_console(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "dingtalk", "union-zhang")
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        _, r = sign_in(kit, fakes, "dingtalk", Person(), nxt=evil)
        assert r.status_code == 303
        assert r.headers["location"] == "/console/", evil


def test_must_change_password_goes_to_the_password_page(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "wecom", "zhangsan", must_change=True)
    _, r = sign_in(kit, fakes, "wecom", Person())
    assert r.status_code == 303 and r.headers["location"] == "/console/password"


def test_the_login_page_offers_the_enabled_platforms(kit: ConsoleKit) -> None:
    page = kit.client().get("/console/login?next=/console/cases")
    for provider in PROVIDERS:
        assert f"/console/oauth/{provider}?next=" in page.text
    assert "使用钉钉登录" in page.text


def test_each_sign_in_is_a_new_session(kit: ConsoleKit, fakes: OAuthFakes) -> None:
    linked_user(kit, "feishu", "zhangsan")
    client = kit.client()
    client.cookies.set("cxhub_console", "planted-by-an-attacker", path="/console")
    r = client.get(fakes.consent(start(client, "feishu"), Person()))
    assert r.status_code == 303
    sid = r.cookies.get("cxhub_console")
    assert sid and sid != "planted-by-an-attacker"
    _, r2 = sign_in(kit, fakes, "feishu", Person())
    assert r2.cookies.get("cxhub_console") not in (None, sid)
