"""Console pages: sign-in through DingTalk, Feishu and WeCom (their OAuth code flows).

``GET /console/oauth/{provider}?next=...`` sends the browser to the platform's consent page with a
``state`` that is signed (HMAC-SHA256 with the hub's secret key), short-lived (10 minutes), bound
to a cookie of this browser and good once. The platform sends the browser back to
``/console/oauth/{provider}/callback?code=...&state=...``; the hub trades the code for the
person's id on the platform, looks the id up in ``console_user_links`` and, when it is linked to an
enabled user, starts a fresh session. A person no admin linked gets "not linked": accounts are
never created from a platform.

What each platform answers (the fakes in tests/kit/oauth_fakes.py check the same fields):

- DingTalk: ``POST {base}/v1.0/oauth2/userAccessToken`` {clientId, clientSecret, code, grantType}
  -> accessToken; ``GET {base}/v1.0/contact/users/me`` (header ``x-acs-dingtalk-access-token``)
  -> unionId, openId. A link may name either.
- Feishu: ``POST {base}/open-apis/auth/v3/app_access_token/internal`` {app_id, app_secret} ->
  app_access_token; ``POST {base}/open-apis/authen/v1/oidc/access_token`` (the app token as
  bearer) {grant_type, code} -> data.access_token; ``GET {base}/open-apis/authen/v1/user_info``
  -> data.user_id, data.open_id, data.union_id. A link may name any of them.
- WeCom: ``GET {base}/cgi-bin/gettoken?corpid=&corpsecret=`` -> access_token;
  ``GET {base}/cgi-bin/auth/getuserinfo?access_token=&code=`` -> userid (a member of the corp;
  an outsider gets an openid, which no link names).

Errors: a code the platform refuses is the browser's problem (400, "try again"); a platform that
refuses the hub's own credentials, answers garbage or does not answer is 502; neither page shows
a secret, a token or the platform's raw answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console.accounts import PROVIDERS, audit
from hub.console.app import PREFIX, client_address, safe_next

if TYPE_CHECKING:
    from hub.config import OAuthProviderConfig
    from hub.console.app import ConsoleApp

log = logging.getLogger("cxhub.console.oauth")

#: the cookie that binds a ``state`` to the browser that asked for it
STATE_COOKIE = "cxhub_console_oauth"
#: how long a browser has to come back from the platform
STATE_SECONDS = 600


class SignInError(Exception):
    """A platform sign-in that failed: ``status`` (400 / 403 / 502 / 504) and a message key."""

    def __init__(self, status: int, key: str, detail: str = ""):
        super().__init__(detail or key)
        self.status = status
        self.key = key
        self.detail = detail  # for the log: names the step and the platform's error code, never a secret


# -- the platforms -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """One platform's code flow: where to send the browser, and how to learn who came back."""

    name: str
    base_url: str
    auth_url: str
    authorize: Callable[[OAuthProviderConfig, str, str, str], str]
    subjects: Callable[[httpx.Client, OAuthProviderConfig, str], list[str]]


def _json(response: httpx.Response, step: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise SignInError(502, "oauth.platform_error", f"{step}: HTTP {response.status_code}, not JSON") from None
    if not isinstance(data, dict):
        raise SignInError(502, "oauth.platform_error", f"{step}: HTTP {response.status_code}, not an object")
    return data


def _dingtalk_authorize(cfg: OAuthProviderConfig, auth_url: str, redirect_uri: str, state: str) -> str:
    query = {
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "client_id": cfg.client_id,
        "scope": "openid",
        "state": state,
        "prompt": "consent",
    }
    return f"{auth_url}?{urlencode(query)}"


def _dingtalk_subjects(http: httpx.Client, cfg: OAuthProviderConfig, code: str) -> list[str]:
    r = http.post(
        "/v1.0/oauth2/userAccessToken",
        json={
            "clientId": cfg.client_id,
            "clientSecret": cfg.client_secret.get_secret_value(),
            "code": code,
            "grantType": "authorization_code",
        },
    )
    data = _json(r, "dingtalk userAccessToken")
    if r.status_code != 200 or not data.get("accessToken"):
        err = str(data.get("code") or f"HTTP {r.status_code}")
        # DingTalk answers 400 for both a bad code and a bad app secret: its error code tells them apart
        status = 502 if r.status_code >= 500 or "client" in err.lower() or "app" in err.lower() else 400
        raise SignInError(status, "oauth.code_refused" if status == 400 else "oauth.platform_error", err)
    me = http.get("/v1.0/contact/users/me", headers={"x-acs-dingtalk-access-token": str(data["accessToken"])})
    info = _json(me, "dingtalk users/me")
    if me.status_code != 200:
        raise SignInError(502, "oauth.platform_error", f"dingtalk users/me: {info.get('code') or me.status_code}")
    return [str(info[k]) for k in ("unionId", "openId") if info.get(k)]


def _feishu_authorize(cfg: OAuthProviderConfig, auth_url: str, redirect_uri: str, state: str) -> str:
    query = {"client_id": cfg.client_id, "response_type": "code", "redirect_uri": redirect_uri, "state": state}
    return f"{auth_url}?{urlencode(query)}"


def _feishu_subjects(http: httpx.Client, cfg: OAuthProviderConfig, code: str) -> list[str]:
    r = http.post(
        "/open-apis/auth/v3/app_access_token/internal",
        json={"app_id": cfg.client_id, "app_secret": cfg.client_secret.get_secret_value()},
    )
    app = _json(r, "feishu app_access_token")
    if app.get("code") != 0 or not app.get("app_access_token"):
        raise SignInError(502, "oauth.platform_error", f"feishu app_access_token: code {app.get('code')}")
    bearer = {"Authorization": f"Bearer {app['app_access_token']}"}
    r = http.post(
        "/open-apis/authen/v1/oidc/access_token",
        json={"grant_type": "authorization_code", "code": code},
        headers=bearer,
    )
    tok = _json(r, "feishu oidc/access_token")
    user_token = (tok.get("data") or {}).get("access_token") if isinstance(tok.get("data"), dict) else None
    if tok.get("code") != 0 or not user_token:
        raise SignInError(400, "oauth.code_refused", f"feishu oidc/access_token: code {tok.get('code')}")
    r = http.get("/open-apis/authen/v1/user_info", headers={"Authorization": f"Bearer {user_token}"})
    info = _json(r, "feishu user_info")
    data = info.get("data") if isinstance(info.get("data"), dict) else None
    if info.get("code") != 0 or data is None:
        raise SignInError(502, "oauth.platform_error", f"feishu user_info: code {info.get('code')}")
    return [str(data[k]) for k in ("user_id", "open_id", "union_id") if data.get(k)]


def _wecom_authorize(cfg: OAuthProviderConfig, auth_url: str, redirect_uri: str, state: str) -> str:
    query = {
        "login_type": "CorpApp",
        "appid": cfg.client_id,
        "agentid": cfg.agent_id or "",
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return f"{auth_url}?{urlencode(query)}"


def _wecom_subjects(http: httpx.Client, cfg: OAuthProviderConfig, code: str) -> list[str]:
    r = http.get(
        "/cgi-bin/gettoken", params={"corpid": cfg.client_id, "corpsecret": cfg.client_secret.get_secret_value()}
    )
    tok = _json(r, "wecom gettoken")
    if tok.get("errcode", 0) != 0 or not tok.get("access_token"):
        raise SignInError(502, "oauth.platform_error", f"wecom gettoken: errcode {tok.get('errcode')}")
    r = http.get("/cgi-bin/auth/getuserinfo", params={"access_token": tok["access_token"], "code": code})
    info = _json(r, "wecom getuserinfo")
    errcode = info.get("errcode", 0)
    if errcode != 0:
        # 40029 invalid code, 40163 code used: the browser's; anything else is the hub's setup
        status = 400 if errcode in (40029, 40163, 50001) else 502
        raise SignInError(
            status, "oauth.code_refused" if status == 400 else "oauth.platform_error", f"wecom errcode {errcode}"
        )
    userid = info.get("userid") or info.get("UserId")
    return [str(userid)] if userid else []  # an outsider (openid only) is nobody's link


PLATFORMS: dict[str, Platform] = {
    "dingtalk": Platform(
        "dingtalk",
        "https://api.dingtalk.com",
        "https://login.dingtalk.com/oauth2/auth",
        _dingtalk_authorize,
        _dingtalk_subjects,
    ),
    "feishu": Platform(
        "feishu",
        "https://open.feishu.cn",
        "https://accounts.feishu.cn/open-apis/authen/v1/authorize",
        _feishu_authorize,
        _feishu_subjects,
    ),
    "wecom": Platform(
        "wecom",
        "https://qyapi.weixin.qq.com",
        "https://login.work.weixin.qq.com/wwlogin/sso/login",
        _wecom_authorize,
        _wecom_subjects,
    ),
}
assert set(PLATFORMS) == set(PROVIDERS)


# -- the state ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StateSigner:
    """``state`` = payload.mac: the provider, a nonce (also in the browser's cookie), where to go
    next, and when it expires, under HMAC-SHA256 with a key derived from the hub's secret key."""

    def __init__(self, secret_key: bytes):
        self._key = hmac.new(secret_key, b"cxhub console oauth state", hashlib.sha256).digest()

    def sign(self, provider: str, nonce: str, nxt: str, expires: int) -> str:
        payload = _b64(json.dumps([provider, nonce, nxt, expires], separators=(",", ":")).encode())
        return f"{payload}.{_b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())}"

    def open(self, state: str) -> tuple[str, str, str, int] | None:
        """(provider, nonce, next, expires) of a state this hub signed, or None."""
        payload, _, mac = state.partition(".")
        if not payload or not mac or len(state) > 2048:
            return None
        want = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(want, mac):
            return None
        try:
            provider, nonce, nxt, expires = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        return str(provider), str(nonce), str(nxt), int(expires)


# -- the routes --------------------------------------------------------------------------------


def router(app: ConsoleApp) -> APIRouter:
    from hub.transport.nonces import StoreNonces

    r = APIRouter(prefix=PREFIX, include_in_schema=False)
    signer = StateSigner(app.rt.config.secret_key)
    used = StoreNonces(app.rt.store)
    public = app.rt.config.raw.server.public_url.rstrip("/")

    def configured(provider: str) -> OAuthProviderConfig | None:
        cfg = app.cfg.oauth.get(provider)  # type: ignore[call-overload]
        return cfg if cfg is not None and cfg.enabled and provider in PLATFORMS else None

    def page(request: Request, status: int, key: str, *, provider: str = "") -> HTMLResponse:
        name = app.catalogue.t(_locale(app, request), f"provider.{provider}") if provider else ""
        response = app.render(
            request, None, "oauth_error.html", status=status, message_key=key, provider=name, next=f"{PREFIX}/"
        )
        response.delete_cookie(STATE_COOKIE, path=f"{PREFIX}/oauth")
        return response

    @r.get("/oauth/{provider}")
    def start(request: Request, provider: str, next: str | None = None) -> Response:
        cfg = configured(provider)
        if cfg is None:
            return page(request, 404, "oauth.unknown_provider")
        platform = PLATFORMS[provider]
        nonce = secrets.token_urlsafe(24)
        expires = int(app.rt.store.clock().timestamp()) + STATE_SECONDS
        state = signer.sign(provider, nonce, safe_next(next), expires)
        target = platform.authorize(cfg, cfg.auth_url or platform.auth_url, _callback(public, provider), state)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            STATE_COOKIE,
            nonce,
            max_age=STATE_SECONDS,
            httponly=True,
            secure=app.secure_cookies,
            samesite="lax",  # the platform's redirect back is a top-level GET from another site
            path=f"{PREFIX}/oauth",
        )
        return response

    # both routes are sync: FastAPI runs them in its thread pool, so the platform's answers and the
    # store never block the event loop
    @r.get("/oauth/{provider}/callback")
    def callback(
        request: Request,
        provider: str,
        code: str | None = None,
        state: str | None = None,
        authCode: str | None = None,  # DingTalk names the code so
        error: str | None = None,
    ) -> Response:
        cfg = configured(provider)
        if cfg is None:
            return page(request, 404, "oauth.unknown_provider")
        opened = signer.open(state or "")
        now = app.rt.store.clock()
        if opened is None or opened[0] != provider:
            return page(request, 400, "oauth.bad_state", provider=provider)
        _, nonce, nxt, expires = opened
        cookie = request.cookies.get(STATE_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), nonce.encode()):
            return page(request, 400, "oauth.bad_state", provider=provider)
        if expires <= now.timestamp():
            return page(request, 400, "oauth.expired", provider=provider)
        # good once: a second use of the same state (a replayed callback URL) is refused
        if not used.claim(f"console-oauth:{nonce}", secrets.token_bytes(16), STATE_SECONDS + 60):
            return page(request, 400, "oauth.replayed", provider=provider)
        the_code = (code or authCode or "").strip()
        if error or not the_code or len(the_code) > 512:
            return page(request, 400, "oauth.cancelled", provider=provider)
        platform = PLATFORMS[provider]
        try:
            with app.rt.context.http_client(cfg.base_url or platform.base_url, timeout=10) as http:
                subjects = platform.subjects(http, cfg, the_code)
        except SignInError as exc:
            log.warning("%s sign-in failed: %s", provider, exc.detail)
            return page(request, exc.status, exc.key, provider=provider)
        except httpx.TimeoutException:
            log.warning("%s sign-in: the platform did not answer in time", provider)
            return page(request, 504, "oauth.timeout", provider=provider)
        except httpx.HTTPError as exc:
            log.warning("%s sign-in: the platform is unreachable (%s)", provider, type(exc).__name__)
            return page(request, 502, "oauth.platform_error", provider=provider)
        user = app.accounts.linked_user(provider, subjects)
        address = client_address(request)
        if user is None or user.disabled:
            with app.rt.store.begin() as conn:
                audit(conn, now, f"oauth:{provider}", "login.failed", None, {"via": provider, "address": address})
            key = "oauth.not_linked" if user is None else "oauth.disabled"
            return page(request, 403, key, provider=provider)
        sid, _ = app.accounts.start_session(user, via=provider)
        with app.rt.store.begin() as conn:
            audit(conn, now, user.login, "login.ok", f"user:{user.login}", {"via": provider, "address": address})
        target = f"{PREFIX}/password" if user.must_change_password else nxt
        response = RedirectResponse(safe_next(target), status_code=303)
        app.set_session_cookie(response, sid)
        response.delete_cookie(STATE_COOKIE, path=f"{PREFIX}/oauth")
        return response

    return r


def _callback(public: str, provider: str) -> str:
    return f"{public}{PREFIX}/oauth/{provider}/callback"


def _locale(app: ConsoleApp, request: Request) -> str:
    from hub.console.i18n import pick_locale

    return pick_locale(request.query_params.get("lang"), None, app.cfg.locale)


__all__ = ["PLATFORMS", "STATE_COOKIE", "SignInError", "StateSigner", "router"]
