"""A local stand-in for DingTalk, for tests, the benchmark and the demo.

The custom robot endpoint (``POST /robot/send``): it checks what the real one checks (access
token, the ``timestamp``/``sign`` pair of the 加签 setting, a timestamp within an hour) and enforces
the 20-messages-a-minute limit the way DingTalk does (``errcode 130101``). Every accepted message is
kept with the time it was accepted.

A corp app's interactive cards: ``GET /gettoken?appkey&appsecret`` (the app's key and secret, from
``apps``) and ``POST /v1.0/card/instances/createAndDeliver`` (header ``x-acs-dingtalk-access-token``):
every delivered card is kept in ``cards``. :meth:`FakeDingTalkRobot.tap` plays a staff member
pressing one of its buttons: DingTalk's HTTP callback for that card (``outTrackId``, ``userId``,
``content`` with ``cardPrivateData.params``), encrypted and signed the way DingTalk seals callbacks
(AES with the subscription's EncodingAESKey for the app key, ``signature`` over token, timestamp,
nonce and ciphertext), posted to the hub's ``dingtalk_events`` URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as secrets_module
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Received:
    """One message the fake robot accepted."""

    at: float  # time.time() when accepted
    token: str
    body: dict[str, Any]

    @property
    def text(self) -> str:
        """The visible text (markdown / actionCard), for assertions."""
        b = self.body
        part = b.get(b.get("msgtype", ""), {})
        return str(part.get("text") or part.get("content") or "")

    @property
    def buttons(self) -> list[dict[str, str]]:
        card = self.body.get("actionCard") or {}
        if card.get("singleURL"):
            return [{"title": card.get("singleTitle", ""), "actionURL": card["singleURL"]}]
        return list(card.get("btns") or [])


@dataclass
class FakeDingTalkRobot:
    """``with FakeDingTalkRobot({"tok": "SECxxx"}) as robot: robot.base_url ...``"""

    secrets: dict[str, str]  # access_token -> signing secret
    apps: dict[str, str] = field(default_factory=lambda: {"dingdemoapp": "demo-app-secret"})  # appkey -> secret
    limit_per_minute: int = 20
    check_timestamp: bool = True  # False when the sender runs on a fake clock
    received: list[Received] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (token, reason)
    cards: list[dict[str, Any]] = field(default_factory=list)  # createAndDeliver bodies

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._cond = threading.Condition(self._lock)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake robot first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeDingTalkRobot:
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                self._answer(200, robot._token(self.path))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if urlparse(self.path).path == "/v1.0/card/instances/createAndDeliver":
                    status, answer = robot._card(self.headers.get("x-acs-dingtalk-access-token", ""), raw)
                    self._answer(status, answer)
                    return
                self._answer(200, robot._handle(self.path, raw))

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-dingtalk").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDingTalkRobot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, path: str, raw: bytes) -> dict[str, Any]:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        token = q.get("access_token", "")
        if url.path != "/robot/send" or token not in self.secrets:
            return self._reject(token, 300001, "token is not exist")
        secret = self.secrets[token]
        if secret:
            ts = q.get("timestamp", "")
            if not ts.isdigit() or (self.check_timestamp and abs(time.time() * 1000 - int(ts)) > 3600_000):
                return self._reject(token, 310000, "timestamp out of range")
            expected = base64.b64encode(
                hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
            ).decode()
            if not hmac.compare_digest(q.get("sign", ""), expected):
                return self._reject(token, 310000, "sign not match")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reject(token, 400, "bad json")
        now = time.time()
        with self._cond:
            recent = self._recent.setdefault(token, deque())
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= self.limit_per_minute:
                self.rejected.append((token, "rate limited"))
                return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
            recent.append(now)
            self.received.append(Received(now, token, body))
            self._cond.notify_all()
        return {"errcode": 0, "errmsg": "ok"}

    def _token(self, path: str) -> dict[str, Any]:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if (
            url.path != "/gettoken"
            or self.apps.get(q.get("appkey", "")) != q.get("appsecret")
            or not q.get("appsecret")
        ):
            return {"errcode": 40089, "errmsg": "invalid appkey or appsecret"}
        return {"errcode": 0, "errmsg": "ok", "access_token": self._app_token(q["appkey"]), "expires_in": 7200}

    @staticmethod
    def _app_token(app_key: str) -> str:
        return "fake-app-token-" + hashlib.sha256(app_key.encode()).hexdigest()[:16]

    def _card(self, token: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if token not in {self._app_token(k) for k in self.apps}:
            return 401, {"code": "InvalidAuthentication", "message": "access token is invalid"}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"code": "InvalidParameter", "message": "body is not JSON"}
        missing = [k for k in ("cardTemplateId", "outTrackId", "openSpaceId", "cardData") if not body.get(k)]
        params = (body.get("cardData") or {}).get("cardParamMap") or {}
        if missing or not all(isinstance(v, str) for v in params.values()):
            return 400, {"code": "InvalidParameter", "message": f"missing {missing} or a non-string card param"}
        with self._cond:
            self.cards.append(body)
            self._cond.notify_all()
        return 200, {"success": True, "result": {"outTrackId": body["outTrackId"], "deliverResults": []}}

    def tap(
        self,
        card: dict[str, Any],
        *,
        user_id: str,
        action: str,
        post: Any,
        url: str,
        token: str,
        aes_key: str,
        app_key: str,
    ) -> Any:
        """``user_id`` presses the ``action`` button of ``card`` (a delivered card): DingTalk's
        callback, sealed and signed, is posted with ``post(url, params=..., content=...)`` (an
        httpx-style client's ``post``); returns its response."""
        from wechatpy.crypto import PrpCrypto

        params = card["cardData"]["cardParamMap"]
        content = {"cardPrivateData": {"actionIds": [action], "params": {"cxhub": params[f"{action}_key"]}}}
        callback = {
            "type": "actionCallback",
            "outTrackId": card["outTrackId"],
            "corpId": "ding-demo-corp",
            "userId": user_id,
            "content": json.dumps(content, ensure_ascii=False),
        }
        plain = json.dumps(callback, ensure_ascii=False)
        encrypt = PrpCrypto(base64.b64decode(aes_key + "=")).encrypt(plain, app_key).decode()
        ts, nonce = str(int(time.time() * 1000)), secrets_module.token_hex(8)
        signature = hashlib.sha1("".join(sorted([token, ts, nonce, encrypt])).encode()).hexdigest()  # noqa: S324 - DingTalk's scheme
        query = {"signature": signature, "timestamp": ts, "nonce": nonce}
        return post(url, params=query, content=json.dumps({"encrypt": encrypt}).encode())

    def _reject(self, token: str, code: int, reason: str) -> dict[str, Any]:
        with self._lock:
            self.rejected.append((token, reason))
        return {"errcode": code, "errmsg": reason}

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until ``count`` messages were accepted (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def max_per_minute(self, token: str | None = None) -> int:
        """The most messages accepted in any 60-second window (per token when given)."""
        times = sorted(r.at for r in self.received if token is None or r.token == token)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - 60:
                lo += 1
            best = max(best, hi - lo + 1)
        return best
