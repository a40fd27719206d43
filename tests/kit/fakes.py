"""Local fake platforms for delivery tests: signature checks, real rate-limit error codes, outages.

One :class:`FakePlatform` answers every outbound API cxhub uses (DingTalk robot / work notice,
WeCom robot / app, Feishu bot / app, WeChat stable_token + messages, Alipay gateway, Aliyun SMS).
Use ``fake.handler`` as an ``httpx.MockTransport`` handler, or ``serve(fake)`` for a real HTTP
server on 127.0.0.1 (port 0). Accepted calls are recorded with their idempotency key
(``X-Cxhub-Idempotency-Key``), so tests can assert "every message exactly once".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx

from connectors.sms import aliyun_signature
from hub.sdk.http import IDEMPOTENCY_HEADER

DINGTALK_SECRET = "SECdingtalk-test-secret"
DINGTALK_TOKEN = "robot-token-1"
WECOM_KEY = "wecom-robot-key"
FEISHU_HOOK = "feishu-hook-id"
FEISHU_SECRET = "feishu-secret"
APP_SECRET = "app-secret"
ALIYUN_SECRET = "aliyun-secret"


@dataclass
class Accepted:
    """One message the fake platform accepted."""

    api: str
    key: str | None
    at: datetime
    body: Any


@dataclass
class FakePlatform:
    """State of the fake platforms; ``clock`` is the fake's own notion of now (share a FakeClock)."""

    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    accepted: list[Accepted] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)  # per api, every request
    codes: Counter[str] = field(default_factory=Counter)  # per "api:code" error answered
    fail_next: int = 0  # answer this many next message requests with HTTP 500
    timeout_next: int = 0  # ... or with a timeout (before processing)
    hang_after_accept: float = 0.0  # server mode: accept, then wait this long before answering
    token_fetches: Counter[str] = field(default_factory=Counter)
    tokens: dict[str, str] = field(default_factory=dict)  # platform -> currently valid token
    windows: dict[str, deque[datetime]] = field(default_factory=dict)
    blocked_until: dict[str, datetime] = field(default_factory=dict)
    feishu_uuids: dict[str, str] = field(default_factory=dict)
    alipay_public_key: str | None = None
    feishu_app_per_second: int = 50
    hang_on: int = 0  # server mode: after accepting the Nth Feishu app message, never answer it
    hang_key: str | None = None  # server mode: ... or the message with this idempotency key (once)
    hanging: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -------------------------------------------------------------- helpers

    def keys(self, api: str | None = None) -> Counter[str]:
        """How many times each idempotency key was accepted (by ``api``)."""
        return Counter(a.key for a in self.accepted if a.key and (api is None or a.api == api))

    def max_in_window(self, api: str, seconds: float) -> int:
        """The most acceptances of ``api`` inside any window of ``seconds``."""
        times = sorted(a.at for a in self.accepted if a.api == api)
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - timedelta(seconds=seconds):
                j += 1
            best = max(best, i - j + 1)
        return best

    def expire_token(self, platform: str) -> None:
        """Invalidate the current token of ``platform`` (the next call gets token-expired)."""
        self.tokens[platform] = "expired-" + self.tokens.get(platform, "")

    def _over(self, bucket: str, limit: int, seconds: float, block: float = 0.0) -> bool:
        now = self.clock()
        if self.blocked_until.get(bucket, now) > now:
            return True
        win = self.windows.setdefault(bucket, deque())
        while win and win[0] <= now - timedelta(seconds=seconds):
            win.popleft()
        if len(win) >= limit:
            if block:
                self.blocked_until[bucket] = now + timedelta(seconds=block)
            return True
        win.append(now)
        return False

    def _issue(self, platform: str, force: bool = False) -> str:
        self.token_fetches[platform] += 1
        if force or platform not in self.tokens or self.tokens[platform].startswith("expired-"):
            self.tokens[platform] = f"{platform}-token-{self.token_fetches[platform]}"
        return self.tokens[platform]

    def _accept(self, api: str, request: httpx.Request, body: Any) -> None:
        self.accepted.append(Accepted(api, request.headers.get(IDEMPOTENCY_HEADER), self.clock(), body))

    # -------------------------------------------------------------- dispatch

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` as the platform would."""
        with self.lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        q = dict(request.url.params)
        token_paths = ("/gettoken", "/cgi-bin/gettoken", "/cgi-bin/stable_token", "/open-apis/auth/v3/")
        if not path.startswith(token_paths):
            if self.timeout_next > 0:
                self.timeout_next -= 1
                raise httpx.ReadTimeout("fake platform timed out", request=request)
            if self.fail_next > 0:
                self.fail_next -= 1
                return httpx.Response(500, text="internal error")
        body: Any = None
        if request.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(request.content)
        elif request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = dict(parse_qsl(request.content.decode()))
        elif request.content.startswith(b"{"):  # wechatpy posts JSON without a content type
            body = json.loads(request.content)
        route = {
            "/robot/send": self.dingtalk_robot,
            "/gettoken": self.dingtalk_token,
            "/topapi/message/corpconversation/asyncsend_v2": self.dingtalk_work,
            "/cgi-bin/webhook/send": self.wecom_robot,
            "/cgi-bin/gettoken": self.wecom_token,
            "/cgi-bin/message/send": self.wecom_app,
            "/open-apis/auth/v3/tenant_access_token/internal": self.feishu_token,
            "/open-apis/im/v1/messages": self.feishu_app,
            "/cgi-bin/stable_token": self.wechat_token,
            "/cgi-bin/message/template/send": self.wechat_message,
            "/cgi-bin/message/subscribe/bizsend": self.wechat_message,
            "/cgi-bin/message/subscribe/send": self.wechat_message,
            "/gateway.do": self.alipay,
            "/": self.aliyun_sms,
        }.get(path)
        if route is None and path.startswith("/open-apis/bot/v2/hook/"):
            route = self.feishu_bot
        if route is None:
            return httpx.Response(404, text="no such api")
        self.requests[route.__name__] += 1
        return route(request, q, body)

    def _err(self, api: str, err: Any, http: int = 200, **extra: Any) -> httpx.Response:
        self.codes[f"{api}:{err}"] += 1
        return httpx.Response(http, json={**extra})

    # -------------------------------------------------------------- DingTalk

    def dingtalk_robot(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("access_token") != DINGTALK_TOKEN:
            return self._err("dingtalk_robot", 300001, errcode=300001, errmsg="token is not exist")
        ts = int(q.get("timestamp", "0"))
        expected = base64.b64encode(
            hmac.new(DINGTALK_SECRET.encode(), f"{ts}\n{DINGTALK_SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        if q.get("sign") != expected or abs(self.clock().timestamp() * 1000 - ts) > 3600_000:
            return self._err("dingtalk_robot", 310000, errcode=310000, errmsg="sign not match")
        if self._over("dingtalk_robot", 20, 60, block=600):
            return self._err(
                "dingtalk_robot", 130101, errcode=130101, errmsg="send too fast, exceed 20 times per minute"
            )
        if body.get("msgtype") not in ("text", "markdown", "actionCard", "link", "feedCard"):
            return self._err("dingtalk_robot", 40035, errcode=40035, errmsg="bad msgtype")
        self._accept("dingtalk_robot", request, body)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    def dingtalk_token(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("appsecret") != APP_SECRET:
            return self._err("dingtalk_token", 40089, errcode=40089, errmsg="invalid appkey or appsecret")
        return httpx.Response(
            200, json={"errcode": 0, "errmsg": "ok", "access_token": self._issue("dingtalk"), "expires_in": 7200}
        )

    def dingtalk_work(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("access_token") != self.tokens.get("dingtalk"):
            return self._err("dingtalk_work", 40014, errcode=40014, errmsg="invalid access_token")
        if self._over("dingtalk_work", 1500, 60):
            return self._err("dingtalk_work", 143103, errcode=143103, errmsg="app qpm exceeded")
        self._accept("dingtalk_work", request, body)
        return httpx.Response(200, json={"errcode": 0, "task_id": 1000 + len(self.accepted), "request_id": "r"})

    # -------------------------------------------------------------- WeCom

    def wecom_robot(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("key") != WECOM_KEY:
            return self._err("wecom_robot", 93000, errcode=93000, errmsg="invalid webhook url")
        if body.get("msgtype") == "markdown" and len(body["markdown"]["content"].encode()) > 4096:
            return self._err("wecom_robot", 40058, errcode=40058, errmsg="markdown.content exceed max length 4096")
        if body.get("msgtype") == "text" and len(body["text"]["content"].encode()) > 2048:
            return self._err("wecom_robot", 40058, errcode=40058, errmsg="content exceed max length 2048")
        if self._over("wecom_robot", 20, 60):
            return self._err("wecom_robot", 45009, errcode=45009, errmsg="api freq out of limit")
        self._accept("wecom_robot", request, body)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    def wecom_token(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("corpsecret") != APP_SECRET:
            return self._err("wecom_token", 40001, errcode=40001, errmsg="invalid credential")
        return httpx.Response(
            200, json={"errcode": 0, "errmsg": "ok", "access_token": self._issue("wecom"), "expires_in": 7200}
        )

    def wecom_app(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("access_token") != self.tokens.get("wecom"):
            return self._err("wecom_app", 42001, errcode=42001, errmsg="access_token expired")
        users = [u for u in body.get("touser", "").split("|") if u]
        if any(self._over(f"wecom_app:{u}", 30, 60) for u in users):
            return self._err("wecom_app", 45009, errcode=45009, errmsg="api freq out of limit")
        invalid = [u for u in users if u.startswith("gone")]
        self._accept("wecom_app", request, body)
        return httpx.Response(
            200,
            json={"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": f"m{len(self.accepted)}"},
        )

    # -------------------------------------------------------------- Feishu

    def feishu_bot(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if request.url.path.rsplit("/", 1)[-1] != FEISHU_HOOK:
            return self._err(
                "feishu_bot", 19001, http=400, code=19001, msg="param invalid: incoming webhook access token invalid"
            )
        ts = int(body.get("timestamp", "0"))
        expected = base64.b64encode(hmac.new(f"{ts}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()).decode()
        if body.get("sign") != expected or abs(self.clock().timestamp() - ts) > 3600:
            return self._err("feishu_bot", 19021, code=19021, msg="sign match fail or timestamp is not within one hour")
        if len(request.content) > 20 * 1024:
            return self._err("feishu_bot", 9499, http=400, code=9499, msg="request body too large")
        if self._over("feishu_bot:s", 5, 1) or self._over("feishu_bot:m", 100, 60):
            return self._err("feishu_bot", 11232, code=11232, msg="frequency limited psm")
        self._accept("feishu_bot", request, body)
        return httpx.Response(200, json={"code": 0, "msg": "success", "data": {}})

    def feishu_token(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if body.get("app_secret") != APP_SECRET:
            return self._err("feishu_token", 10014, http=400, code=10014, msg="app secret invalid")
        return httpx.Response(
            200, json={"code": 0, "msg": "ok", "tenant_access_token": self._issue("feishu"), "expire": 7200}
        )

    def feishu_app(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.tokens.get('feishu')}":
            return self._err("feishu_app", 99991663, http=400, code=99991663, msg="Invalid access token")
        if self._over("feishu_app", self.feishu_app_per_second, 1):
            return self._err("feishu_app", 99991400, http=429, code=99991400, msg="request trigger frequency limit")
        json.loads(body["content"])  # must be valid card JSON
        uuid = body.get("uuid")
        if uuid and uuid in self.feishu_uuids:  # Feishu: same uuid within 1 h -> the same message, not a new one
            return httpx.Response(
                200, json={"code": 0, "msg": "success", "data": {"message_id": self.feishu_uuids[uuid]}}
            )
        self._accept("feishu_app", request, body)
        mid = f"om_{len(self.accepted)}"
        if uuid:
            self.feishu_uuids[uuid] = mid
        return httpx.Response(200, json={"code": 0, "msg": "success", "data": {"message_id": mid}})

    # -------------------------------------------------------------- WeChat

    def wechat_token(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if body.get("secret") != APP_SECRET:
            return self._err("wechat_token", 40125, errcode=40125, errmsg="invalid appsecret")
        token = self._issue("wechat", force=bool(body.get("force_refresh")))
        return httpx.Response(200, json={"access_token": token, "expires_in": 7200})

    def wechat_message(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        if q.get("access_token") != self.tokens.get("wechat"):
            return self._err("wechat", 40001, errcode=40001, errmsg="invalid credential, access_token is invalid")
        openid = body.get("touser", "")
        if openid.startswith("bad"):
            return self._err("wechat", 40003, errcode=40003, errmsg="invalid openid")
        if openid.startswith("unsub"):
            return self._err("wechat", 43101, errcode=43101, errmsg="user refuse to accept the msg")
        if self._over("wechat", 100, 60):
            return self._err("wechat", 45009, errcode=45009, errmsg="reach max api daily quota limit")
        self._accept("wechat" + request.url.path.replace("/", "_"), request, body)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": 200 + len(self.accepted)})

    # -------------------------------------------------------------- Alipay

    def alipay(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        from alipay.aop.api.util.SignatureUtils import get_sign_content, verify_with_rsa

        params = dict(body)
        sign = params.pop("sign", "")
        ok = False
        if self.alipay_public_key:
            try:
                ok = verify_with_rsa(self.alipay_public_key, get_sign_content(params).encode(), sign)
            except Exception:
                ok = False
        name = "alipay_open_app_mini_templatemessage_send_response"
        if not ok:
            resp = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
                "sub_msg": "bad sign",
            }
            self.codes["alipay:40002"] += 1
        else:
            biz = json.loads(params["biz_content"])
            if biz.get("to_user_id", "").endswith("0000"):
                resp = {"code": "40004", "msg": "Business Failed", "sub_code": "USER_TEMPLATE_ILLEGAL", "sub_msg": "x"}
                self.codes["alipay:40004"] += 1
            else:
                self._accept("alipay", request, biz)
                resp = {"code": "10000", "msg": "Success"}
        return httpx.Response(200, json={name: resp, "sign": "unsigned-in-fake"})

    # -------------------------------------------------------------- Aliyun SMS

    def aliyun_sms(self, request: httpx.Request, q: dict[str, str], body: Any) -> httpx.Response:
        params = dict(q)
        sig = params.pop("Signature", "")
        if sig != aliyun_signature(params, ALIYUN_SECRET):
            return self._err("sms", "SignatureDoesNotMatch", http=400, Code="SignatureDoesNotMatch", Message="sig")
        if any(not p.isdigit() or len(p) != 11 for p in params["PhoneNumbers"].split(",")):
            return self._err("sms", "isv.MOBILE_NUMBER_ILLEGAL", Code="isv.MOBILE_NUMBER_ILLEGAL", Message="bad number")
        self._accept("sms", request, params)
        return httpx.Response(
            200, json={"Code": "OK", "Message": "OK", "BizId": f"biz{len(self.accepted)}", "RequestId": "r"}
        )


class _Handler(BaseHTTPRequestHandler):
    fake: FakePlatform
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        request = httpx.Request(
            self.command, f"http://fake{self.path}", headers=dict(self.headers.items()), content=body
        )
        try:
            response = self.fake.handler(request)
        except httpx.TimeoutException:
            time.sleep(3)  # longer than the tests' client timeout
            return
        if (
            self.fake.hang_after_accept
            and response.status_code == 200
            and request.url.path
            not in (
                "/gettoken",
                "/cgi-bin/gettoken",
                "/cgi-bin/stable_token",
                "/open-apis/auth/v3/tenant_access_token/internal",
            )
        ):
            time.sleep(self.fake.hang_after_accept)
        if (
            request.url.path == "/open-apis/im/v1/messages"
            and (
                (self.fake.hang_on and len(self.fake.accepted) == self.fake.hang_on)
                or (self.fake.hang_key and request.headers.get(IDEMPOTENCY_HEADER) == self.fake.hang_key)
            )
            and not self.fake.hanging.is_set()
        ):
            self.fake.hanging.set()  # the platform has it; the sender never hears back
            time.sleep(30)
            return
        self.send_response(response.status_code)
        for k, v in response.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_POST = _any


@contextmanager
def serve(fake: FakePlatform) -> Iterator[str]:
    """Serve ``fake`` over real HTTP on 127.0.0.1 (free port); yields the base URL."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
