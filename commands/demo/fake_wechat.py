"""A local stand-in for WeChat's message APIs (official account and mini-program), for the demo and
the tests.

It answers what the real ones answer, on the same paths:

- ``POST /cgi-bin/stable_token`` (``grant_type``, ``appid``, ``secret``, ``force_refresh``): an
  access token for a known app and secret (``40013`` bad appid, ``40125`` bad secret);
- ``POST /cgi-bin/message/template/send`` (公众号模板消息), ``POST /cgi-bin/message/subscribe/bizsend``
  (公众号订阅通知) and ``POST /cgi-bin/message/subscribe/send`` (小程序订阅消息), with
  ``?access_token=``: ``40001`` for an unknown token; the body is checked against the documented
  fields (an unknown key, a missing one, a ``data`` field that is not ``{"value": ...}``, a
  mini-program ``page`` that is a web link: ``47001`` data format error, ``40165`` invalid page;
  a subscribe message's ``thing`` value over 20 characters and the like: ``47003``);
  a refusal configured per openid (``refuse={"oGone": 43004}``) is answered as WeChat does.

Every accepted message is kept (``received``) with the API it came in on.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

#: the documented request fields of each message API: (required, optional)
API_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "/cgi-bin/message/template/send": (
        frozenset({"touser", "template_id", "data"}),
        frozenset({"url", "miniprogram", "client_msg_id"}),
    ),
    "/cgi-bin/message/subscribe/bizsend": (
        frozenset({"touser", "template_id", "data"}),
        frozenset({"page", "miniprogram"}),
    ),
    "/cgi-bin/message/subscribe/send": (
        frozenset({"touser", "template_id", "data"}),
        frozenset({"page", "miniprogram_state", "lang"}),
    ),
}
API_NAMES = {
    "/cgi-bin/message/template/send": "oa_template",
    "/cgi-bin/message/subscribe/bizsend": "oa_subscribe",
    "/cgi-bin/message/subscribe/send": "mp_subscribe",
}
#: the longest value of a subscribe message's field, by the type its key starts with (thing1...)
SUBSCRIBE_LIMITS = {
    "thing": 20,
    "name": 10,
    "phrase": 5,
    "symbol": 5,
    "character_string": 32,
    "number": 32,
    "letter": 32,
}
ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40165: "invalid weapp pagepath",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    47001: "data format error",
    47003: "argument invalid",
}


@dataclass
class WeChatMessage:
    """One message the fake accepted."""

    at: float
    api: str  # oa_template / oa_subscribe / mp_subscribe
    appid: str
    body: dict[str, Any]

    @property
    def fields(self) -> dict[str, str]:
        """The template fields' values."""
        return {k: str(v.get("value", "")) for k, v in (self.body.get("data") or {}).items()}


def problem(api_path: str, body: Any) -> tuple[int, str] | None:
    """Why WeChat would refuse ``body`` on ``api_path`` (errcode, text), or None: its documented shape."""
    required, optional = API_FIELDS[api_path]
    if not isinstance(body, dict):
        return 47001, "body is not a JSON object"
    missing = sorted(required - set(body))
    unknown = sorted(set(body) - required - optional)
    if missing or unknown:
        return 47001, f"missing {missing}, unknown {unknown}"
    if not isinstance(body["touser"], str) or not body["touser"]:
        return 40003, "touser"
    data = body["data"]
    if not isinstance(data, dict) or not data:
        return 47001, "data must be an object of template fields"
    for key, value in data.items():
        if not isinstance(value, dict) or set(value) - {"value", "color"} or not isinstance(value.get("value"), str):
            return 47001, f"data.{key} must be {{'value': text}}"
    if api_path != "/cgi-bin/message/template/send":  # subscribe messages: typed fields, bounded
        for key, value in data.items():
            limit = SUBSCRIBE_LIMITS.get(key.rstrip("0123456789"))
            if limit is not None and len(value["value"]) > limit:
                return 47003, f"argument invalid! data.{key}.value is over {limit} characters"
    if api_path == "/cgi-bin/message/subscribe/send":
        page = body.get("page")
        if page is not None and (not isinstance(page, str) or "://" in page or page.startswith("/")):
            return 40165, f"page {page!r} is not a page path of the mini-program"
    url = body.get("url")
    if api_path == "/cgi-bin/message/template/send" and url is not None and not str(url).startswith("http"):
        return 47001, "url must be a web link"
    return None


@dataclass
class FakeWeChat:
    """``with FakeWeChat({"wx123": "secret"}) as wx: wx.base_url ...``"""

    apps: dict[str, str]  # appid -> app secret
    refuse: dict[str, int] = field(default_factory=dict)  # openid -> errcode
    received: list[WeChatMessage] = field(default_factory=list)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (api, errcode, why)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._tokens: dict[str, str] = {}  # token -> appid
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeWeChat:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                answer = fake.handle(self.path, raw)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-wechat").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeWeChat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, path: str, raw: bytes) -> dict[str, Any]:
        """The answer to one POST (also usable without the HTTP server)."""
        url = urlparse(path)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(url.path, 47001, "body is not JSON")
        if url.path == "/cgi-bin/stable_token":
            return self._token(body)
        if url.path not in API_FIELDS:
            return self._error(url.path, 404, "no such API")
        token = {k: v[0] for k, v in parse_qs(url.query).items()}.get("access_token", "")
        with self._lock:
            appid = self._tokens.get(token)
        if appid is None:
            return self._error(url.path, 40001, "access_token")
        why = problem(url.path, body)
        if why is not None:
            return self._error(url.path, *why)
        code = self.refuse.get(body["touser"])
        if code:
            return self._error(url.path, code, ERRMSG.get(code, "refused"))
        with self._lock:
            self.received.append(WeChatMessage(time.time(), API_NAMES[url.path], appid, body))
            msgid = len(self.received)
            self._lock.notify_all()
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def _token(self, body: dict[str, Any]) -> dict[str, Any]:
        appid, secret = str(body.get("appid", "")), str(body.get("secret", ""))
        if body.get("grant_type") != "client_credential":
            return self._error("stable_token", 40002, "invalid grant_type")
        if appid not in self.apps:
            return self._error("stable_token", 40013, "appid")
        if secret != self.apps[appid]:
            return self._error("stable_token", 40125, "secret")
        token = "ACCESS_" + secrets.token_hex(8)
        with self._lock:
            self._tokens[token] = appid
            self.tokens_issued += 1
        return {"access_token": token, "expires_in": 7200}

    def _error(self, api: str, code: int, why: str) -> dict[str, Any]:
        with self._lock:
            self.rejected.append((API_NAMES.get(api, api), code, why))
        return {"errcode": code, "errmsg": f"{ERRMSG.get(code, why)} ({why})"}

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until ``count`` messages were accepted (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True
