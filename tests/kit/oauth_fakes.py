"""Local fakes of the three platforms' sign-in (OAuth code) APIs: DingTalk, Feishu, WeCom.

Each fake checks what the real one checks, as its docs describe it (written here, not imported
from cxhub): the app's credentials (DingTalk clientId/clientSecret, Feishu app_id/app_secret, WeCom
corpid/corpsecret), that an authorisation code was issued by it, to this app, and is used once;
that the user token presented is one it issued. Errors have the platforms' shapes: DingTalk HTTP
400 with ``{"code", "message"}``, Feishu ``{"code": non-zero, "msg"}``, WeCom ``{"errcode", "errmsg"}``.

Use ``fakes.handler`` as an ``httpx.MockTransport`` handler (the hub's injected transport);
``fakes.consent(authorize_url, person)`` plays the person who scans the QR code and agrees: it
reads the authorize URL the console redirected to, checks its client id and redirect URI, and
returns the callback URL with a fresh code and the state, as the platform's redirect would.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

DINGTALK = "http://dingtalk.fake"
FEISHU = "http://feishu.fake"
WECOM = "http://wecom.fake"

APPS: dict[str, dict[str, str]] = {
    "dingtalk": {"client_id": "dingoa-client-1", "client_secret": "dingtalk-app-secret-xyz"},
    "feishu": {"client_id": "cli_a1b2c3d4e5", "client_secret": "feishu-app-secret-xyz"},
    "wecom": {"client_id": "ww-corp-1", "client_secret": "wecom-app-secret-xyz", "agent_id": "1000002"},
}


def oauth_config() -> dict[str, Any]:
    """The ``console.oauth`` section that points the hub at these fakes."""
    bases = {"dingtalk": DINGTALK, "feishu": FEISHU, "wecom": WECOM}
    auth = {
        "dingtalk": f"{DINGTALK}/oauth2/auth",
        "feishu": f"{FEISHU}/open-apis/authen/v1/authorize",
        "wecom": f"{WECOM}/wwlogin/sso/login",
    }
    return {name: {**app, "base_url": bases[name], "auth_url": auth[name]} for name, app in APPS.items()}


@dataclass
class Person:
    """Someone with an account on the platforms: their ids on each."""

    union_id: str = "union-zhang"  # DingTalk unionId / Feishu union_id
    open_id: str = "open-zhang"  # DingTalk openId / Feishu open_id
    user_id: str = "zhangsan"  # Feishu user_id / WeCom userid (a corp member)
    member: bool = True  # WeCom: a member of the corp (else an outsider with an openid)


@dataclass
class OAuthFakes:
    """The three platforms' state: codes issued, tokens issued, and faults to inject."""

    codes: dict[str, tuple[str, Person]] = field(default_factory=dict)  # code -> (provider, person)
    user_tokens: dict[str, Person] = field(default_factory=dict)
    app_tokens: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    #: the next platform calls time out (httpx.ReadTimeout), before any processing
    timeout_next: int = 0
    #: the next platform calls answer HTTP 500 with an HTML body (a gateway in trouble)
    fail_next: int = 0
    seen_secrets: list[str] = field(default_factory=list)

    # -- the browser side ----------------------------------------------------------------------
    def consent(self, authorize_url: str, person: Person, *, callback_base: str = "http://testserver") -> str:
        """The callback path (with query) the platform sends the browser to once ``person`` agrees."""
        parts = urlsplit(authorize_url)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        base = f"{parts.scheme}://{parts.netloc}"
        provider = {DINGTALK: "dingtalk", FEISHU: "feishu", WECOM: "wecom"}[base]
        app = APPS[provider]
        if provider == "wecom":
            assert q.get("appid") == app["client_id"], q
            assert q.get("agentid") == app["agent_id"], q
            assert q.get("login_type") == "CorpApp", q
        else:
            assert q.get("client_id") == app["client_id"], q
            assert q.get("response_type") == "code", q
        redirect = q["redirect_uri"]
        assert redirect.startswith(callback_base), redirect
        code = self.issue_code(provider, person)
        name = "authCode" if provider == "dingtalk" else "code"
        back = urlsplit(redirect)
        return f"{back.path}?{urlencode({name: code, 'state': q['state']})}"

    def issue_code(self, provider: str, person: Person) -> str:
        code = f"{provider}-code-{secrets.token_hex(8)}"
        self.codes[code] = (provider, person)
        return code

    def _take_code(self, provider: str, code: str) -> Person | None:
        found = self.codes.get(code)
        if found is None or found[0] != provider:
            return None
        del self.codes[code]  # a code is good once
        return found[1]

    # -- the API side --------------------------------------------------------------------------
    def handler(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        base = f"{url.scheme}://{url.host}"
        self.calls[f"{url.host}{url.path}"] += 1
        if self.timeout_next > 0:
            self.timeout_next -= 1
            raise httpx.ReadTimeout("the fake platform did not answer", request=request)
        if self.fail_next > 0:
            self.fail_next -= 1
            return httpx.Response(500, text="<html>502 Bad Gateway</html>")
        if base == DINGTALK:
            return self._dingtalk(request)
        if base == FEISHU:
            return self._feishu(request)
        if base == WECOM:
            return self._wecom(request)
        return httpx.Response(404, json={"error": f"no fake at {base}"})

    def _dingtalk(self, request: httpx.Request) -> httpx.Response:
        app = APPS["dingtalk"]
        path = request.url.path
        if path == "/v1.0/oauth2/userAccessToken" and request.method == "POST":
            body = json.loads(request.content or b"{}")
            self.seen_secrets.append(str(body.get("clientSecret")))
            if body.get("clientId") != app["client_id"] or body.get("clientSecret") != app["client_secret"]:
                return _ding_error("invalidClientSecret", "clientId或clientSecret不合法")
            if body.get("grantType") != "authorization_code":
                return _ding_error("invalidGrantType", "grantType不合法")
            person = self._take_code("dingtalk", str(body.get("code")))
            if person is None:
                return _ding_error("invalidAuthCode", "不合法的临时授权码")
            token = f"ding-user-{secrets.token_hex(8)}"
            self.user_tokens[token] = person
            return httpx.Response(
                200, json={"accessToken": token, "refreshToken": "r", "expireIn": 7200, "corpId": "ding-corp"}
            )
        if path == "/v1.0/contact/users/me" and request.method == "GET":
            person = self.user_tokens.get(request.headers.get("x-acs-dingtalk-access-token", ""))
            if person is None:
                return httpx.Response(401, json={"code": "InvalidAuthentication", "message": "不合法的access_token"})
            return httpx.Response(
                200,
                json={"nick": "张三", "unionId": person.union_id, "openId": person.open_id, "stateCode": "86"},
            )
        return httpx.Response(404, json={"code": "NotFound", "message": path})

    def _feishu(self, request: httpx.Request) -> httpx.Response:
        app = APPS["feishu"]
        path = request.url.path
        if path == "/open-apis/auth/v3/app_access_token/internal" and request.method == "POST":
            body = json.loads(request.content or b"{}")
            self.seen_secrets.append(str(body.get("app_secret")))
            if body.get("app_id") != app["client_id"]:
                return httpx.Response(200, json={"code": 10003, "msg": "invalid param app_id"})
            if body.get("app_secret") != app["client_secret"]:
                return httpx.Response(200, json={"code": 10014, "msg": "app secret invalid"})
            token = f"a-{secrets.token_hex(8)}"
            self.app_tokens.add(token)
            return httpx.Response(200, json={"code": 0, "msg": "ok", "app_access_token": token, "expire": 7200})
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if path == "/open-apis/authen/v1/oidc/access_token" and request.method == "POST":
            if bearer not in self.app_tokens:
                return httpx.Response(400, json={"code": 99991663, "msg": "Invalid access token for authorization"})
            body = json.loads(request.content or b"{}")
            if body.get("grant_type") != "authorization_code":
                return httpx.Response(400, json={"code": 20001, "msg": "invalid grant_type"})
            person = self._take_code("feishu", str(body.get("code")))
            if person is None:
                return httpx.Response(400, json={"code": 20003, "msg": "invalid code"})
            token = f"u-{secrets.token_hex(8)}"
            self.user_tokens[token] = person
            return httpx.Response(
                200,
                json={
                    "code": 0,
                    "msg": "success",
                    "data": {"access_token": token, "token_type": "Bearer", "expires_in": 6900, "scope": ""},
                },
            )
        if path == "/open-apis/authen/v1/user_info" and request.method == "GET":
            person = self.user_tokens.get(bearer)
            if person is None:
                return httpx.Response(401, json={"code": 99991668, "msg": "Invalid access token"})
            data = {"name": "张三", "open_id": person.open_id, "union_id": person.union_id, "user_id": person.user_id}
            return httpx.Response(200, json={"code": 0, "msg": "success", "data": data})
        return httpx.Response(404, json={"code": 404, "msg": path})

    def _wecom(self, request: httpx.Request) -> httpx.Response:
        app = APPS["wecom"]
        path = request.url.path
        q = dict(request.url.params)
        if path == "/cgi-bin/gettoken":
            self.seen_secrets.append(q.get("corpsecret", ""))
            if q.get("corpid") != app["client_id"]:
                return httpx.Response(200, json={"errcode": 40013, "errmsg": "invalid corpid"})
            if q.get("corpsecret") != app["client_secret"]:
                return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
            token = f"wecom-{secrets.token_hex(8)}"
            self.app_tokens.add(token)
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})
        if path == "/cgi-bin/auth/getuserinfo":
            if q.get("access_token") not in self.app_tokens:
                return httpx.Response(200, json={"errcode": 40014, "errmsg": "invalid access_token"})
            person = self._take_code("wecom", q.get("code", ""))
            if person is None:
                return httpx.Response(200, json={"errcode": 40029, "errmsg": "invalid code"})
            if not person.member:
                return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "openid": person.open_id})
            return httpx.Response(
                200, json={"errcode": 0, "errmsg": "ok", "userid": person.user_id, "user_ticket": "ticket"}
            )
        return httpx.Response(404, json={"errcode": 404, "errmsg": path})


def _ding_error(code: str, message: str) -> httpx.Response:
    return httpx.Response(400, json={"code": code, "message": message, "requestid": secrets.token_hex(6)})
