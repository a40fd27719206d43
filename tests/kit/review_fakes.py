"""Local fake review platforms (Taobao TOP, JD JOS, Dianping) on 127.0.0.1:<free port>.

Each one checks the signature with its own implementation of the platform's rule (written from the
platform docs here, not imported from cxhub), checks the timestamp window, paginates a data set
filtered by the requested time window, enforces the platform's page limits, and on demand throttles
or fails with realistic error bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CN = timezone(timedelta(hours=8))
FMT = "%Y-%m-%d %H:%M:%S"


def _cn(text: str) -> datetime:
    return datetime.strptime(text, FMT).replace(tzinfo=CN)


class FakePlatform:
    """Base: an HTTP server in a thread; subclasses implement ``respond(params) -> (status, body, headers)``."""

    def __init__(self, *, app_key: str = "12345678", secret: str = "s3cr3t", session: str = "sess-ok"):
        self.app_key = app_key
        self.secret = secret
        self.session = session
        self.now: Callable[[], datetime] = lambda: datetime.now(CN)
        self.reviews: list[dict[str, Any]] = []
        self.calls: list[dict[str, str]] = []
        self.throttle_every = 0  # every Nth call is throttled
        self.fail_next: list[int] = []  # HTTP statuses to return for the next calls
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query, keep_blank_values=True))
                length = int(self.headers.get("content-length") or 0)
                if length:
                    params.update(parse_qsl(self.rfile.read(length).decode("utf-8"), keep_blank_values=True))
                with fake.lock:
                    fake.calls.append(params)
                    n = len(fake.calls)
                    status, body, headers = fake._dispatch(params, n)
                data = json.dumps(body, ensure_ascii=False).encode("utf-8") if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("content-type", "application/json;charset=utf-8")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _dispatch(self, params: dict[str, str], n: int) -> tuple[int, Any, dict[str, str]]:
        if self.fail_next:
            status = self.fail_next.pop(0)
            headers = {"retry-after": "2"} if status == 429 else {}
            return status, b"<html>upstream error</html>", headers
        return self.respond(params, n)

    def respond(self, params: dict[str, str], n: int) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def in_window(self, start: str, end: str, key: str) -> list[dict[str, Any]]:
        s, e = _cn(start), _cn(end)
        rows = [r for r in self.reviews if s <= _cn(r[key]) < e]
        return sorted(rows, key=lambda r: r[key], reverse=True)  # newest first, as the platforms do

    def timestamp_ok(self, ts: str) -> bool:
        try:
            return abs((_cn(ts) - self.now()).total_seconds()) <= 600
        except ValueError:
            return False


def _kv(params: dict[str, str]) -> str:
    return "".join(k + v for k, v in sorted(params.items()) if k != "sign" and v != "")


class FakeTaobao(FakePlatform):
    """TOP gateway serving ``taobao.traderates.get``: sign md5 / hmac / hmac-sha256, page_no <= 200."""

    MAX_PAGE = 200

    def expected_sign(self, params: dict[str, str]) -> str:
        s = _kv(params)
        method = params.get("sign_method", "md5")
        if method == "hmac":
            return hmac.new(self.secret.encode(), s.encode(), hashlib.md5).hexdigest().upper()
        if method == "hmac-sha256":
            return hmac.new(self.secret.encode(), s.encode(), hashlib.sha256).hexdigest().upper()
        return hashlib.md5((self.secret + s + self.secret).encode()).hexdigest().upper()

    @staticmethod
    def error(code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"code": code, "msg": msg, "request_id": "fake"}
        if sub_code:
            err.update(sub_code=sub_code, sub_msg=sub_msg or sub_code)
        return {"error_response": err}

    def respond(self, params: dict[str, str], n: int) -> tuple[int, Any, dict[str, str]]:
        for p in ("method", "app_key", "timestamp", "format", "v", "sign_method", "sign"):
            if p not in params:
                return 200, self.error(40, "Missing required arguments:" + p), {}
        if params["app_key"] != self.app_key:
            return 200, self.error(29, "Invalid app Key"), {}
        if params["sign"] != self.expected_sign(params):
            return 200, self.error(25, "Invalid signature"), {}
        if not self.timestamp_ok(params["timestamp"]):
            return 200, self.error(31, "Invalid timestamp"), {}
        if params.get("session") != self.session:
            return 200, self.error(27, "Invalid session", "sessionkey-not-generated-by-server"), {}
        if self.throttle_every and n % self.throttle_every == 0:
            return (
                200,
                self.error(
                    7,
                    "App Call Limited",
                    "accesscontrol.limited-by-app-access-count",
                    "This ban will last for 1 more seconds",
                ),
                {},
            )
        page, size = int(params.get("page_no", 1)), int(params.get("page_size", 40))
        if page > self.MAX_PAGE or not 1 <= size <= 150:
            return 200, self.error(15, "Remote service error", "isv.invalid-parameter", "page_no or page_size"), {}
        rows = self.in_window(params["start_date"], params["end_date"], "created")
        chunk = rows[(page - 1) * size : page * size]
        body = {
            "traderates_get_response": {
                "trade_rates": {"trade_rate": chunk},
                "has_next": page * size < len(rows),
            }
        }
        return 200, body, {}

    def add(self, count: int, start: datetime, step: timedelta) -> None:
        base = len(self.reviews)
        for i in range(count):
            created = (start + step * i).astimezone(CN).strftime(FMT)
            result = ("good", "neutral", "bad")[i % 3]
            self.reviews.append(
                {
                    "tid": 3000000000 + base + i,
                    "oid": 4000000000 + base + i,
                    "role": "buyer",
                    "nick": f"t**{i % 10}",
                    "result": result,
                    "created": created,
                    "rated_nick": "好邻居旗舰店",
                    "item_title": "鲜牛奶 1L x 6",
                    "item_price": "59.90",
                    "content": f"评价{i}",
                    "num_iid": 612345678901,
                }
            )


class FakeJd(FakePlatform):
    """JOS ``routerjson`` serving getVenderCommentsForJos: MD5 sign, 360buy_param_json, pageSize <= 50."""

    RESPONSE = "jingdong_pop_PopCommentJsfService_getVenderCommentsForJos_responce"

    @staticmethod
    def error(code: str, zh: str, en: str) -> dict[str, Any]:
        return {"error_response": {"code": code, "zh_desc": zh, "en_desc": en}}

    def respond(self, params: dict[str, str], n: int) -> tuple[int, Any, dict[str, str]]:
        expected = hashlib.md5((self.secret + _kv(params) + self.secret).encode()).hexdigest().upper()
        if params.get("sign") != expected:
            return 200, self.error("14", "签名无效", "Invalid signature"), {}
        if params.get("access_token") != self.session:
            return 200, self.error("19", "access_token无效", "Invalid access_token"), {}
        if not self.timestamp_ok(params.get("timestamp", "")):
            return 200, self.error("8", "时间戳错误", "Invalid timestamp"), {}
        if self.throttle_every and n % self.throttle_every == 0:
            return 200, self.error("61", "调用次数超限", "Call limit exceeded"), {}
        biz = json.loads(params["360buy_param_json"])
        page, size = int(biz.get("page", 1)), int(biz.get("pageSize", 10))
        if size > 50:
            return 200, self.error("5", "参数错误", "pageSize must be <= 50"), {}
        rows = self.in_window(biz["beginTime"], biz["endTime"], "creationTime")
        chunk = rows[(page - 1) * size : page * size]
        return 200, {self.RESPONSE: {"code": "0", "comments": chunk}}, {}

    def add(self, count: int, start: datetime, step: timedelta) -> None:
        base = len(self.reviews)
        for i in range(count):
            self.reviews.append(
                {
                    "commentId": 15000000000 + base + i,
                    "skuid": 100012345678,
                    "skuName": "智能电饭煲 4L",
                    "content": f"评论{i}",
                    "creationTime": (start + step * i).astimezone(CN).strftime(FMT),
                    "score": 1 + i % 5,
                    "orderId": 280000000000 + i,
                    "pin": f"jd_{i:06x}",
                    "venderId": 10086,
                }
            )


class FakeDianping(FakePlatform):
    """Dianping open platform serving router/ugc/queryshopreview: MD5 sign (lower-case), offset/limit."""

    def respond(self, params: dict[str, str], n: int) -> tuple[int, Any, dict[str, str]]:
        expected = hashlib.md5((self.secret + _kv(params) + self.secret).encode()).hexdigest()
        if params.get("sign") != expected:
            return 200, {"code": 603, "msg": "签名错误"}, {}
        if params.get("session") != self.session:
            return 200, {"code": 602, "msg": "session已过期"}, {}
        if self.throttle_every and n % self.throttle_every == 0:
            return 200, {"code": 701, "msg": "调用频率超限"}, {}
        shop = params.get("open_shop_uuid")
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 20))
        rows = [r for r in self.in_window(params["begintime"], params["endtime"], "addTime") if r["shop"] == shop]
        chunk = [{k: v for k, v in r.items() if k != "shop"} for r in rows[offset : offset + limit]]
        return 200, {"code": 200, "msg": "success", "data": {"reviewInfoDTOList": chunk}}, {}

    def add(self, count: int, start: datetime, step: timedelta, shop: str) -> None:
        base = len(self.reviews)
        for i in range(count):
            self.reviews.append(
                {
                    "shop": shop,
                    "reviewId": 790000000 + base + i,
                    "shopName": f"好邻居({shop})",
                    "star": 10 * (1 + i % 5),
                    "reviewBody": f"点评{i}",
                    "addTime": (start + step * i).astimezone(CN).strftime(FMT),
                    "userId": 55000000 + i,
                    "platform": 1,
                }
            )
