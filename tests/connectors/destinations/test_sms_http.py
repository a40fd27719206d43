"""The generic HTTP SMS gateway (``sms_http``): templates, token and signatures, success and error
codes, option validation, and delivery through the worker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import Counter
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from kit.outbox import FAST, put, rows, run_until_done
from pydantic import ValidationError

from hub.errors import PermanentError, RetriableError
from hub.features.delivery.worker import DeliveryWorker
from hub.registry import get
from hub.sdk.connector import ConnectorContext, MemoryKeyValueStore, OutboundMessage
from hub.sdk.policy import Throttled
from hub.sdk.testing import ConnectorConformance, FakeClock
from hub.store import Store

TOKEN = "gw-token-SECRET-1"
SECRET = "gw-sign-SECRET-2"

JSON_TOKEN = {
    "url": "http://gw/api/v1/sms/send",
    "body": {
        "mobiles": "{to_list}",
        "template_id": "{template}",
        "params": "{params}",
        "content": "【{sign_name}】{text}",
        "request_id": "{key_hash}",
        "store": "{data.store}",
    },
    "headers": {"Authorization": "Bearer {token}"},
    "token": TOKEN,
    "sign_name": "某某超市",
    "template_code": "TPL_DEFAULT",
    "success_field": "result.code",
    "success_values": ["0", "OK"],
    "message_id_field": "result.items.0.sid",
    "error_field": "result.msg",
    "throttle_codes": ["429001"],
    "permanent_codes": ["1001", "1002"],
}

FORM_HMAC = {
    "url": "http://gw/send",
    "body_format": "form",
    "body": {"account": "cx", "mobile": "{to}", "msg": "{text}", "ts": "{timestamp}", "nonce": "{nonce}"},
    "headers": {"X-Timestamp": "{timestamp}", "X-Nonce": "{nonce}", "X-Signature": "{sign}"},
    "sign": {"secret": SECRET, "algorithm": "sha256", "message": "{timestamp}\n{nonce}\n{body}", "encoding": "base64"},
    "success_field": "code",
    "success_values": ["0"],
    "message_id_field": "msgid",
}

GET_MD5 = {
    "url": "http://gw/sms.php?v=2",
    "method": "GET",
    "body": {"user": "cx", "phone": "{phone}", "text": "{text}", "time": "{timestamp}"},
    "sign": {
        "secret": SECRET,
        "algorithm": "md5",
        "mode": "digest",
        "message": "{sorted_params}{secret}",
        "field": "sign",
    },
    "max_recipients": 1,
    "success_field": "status",
    "success_values": ["success"],
    "error_field": "reason",
}


class Gateway:
    """A fake gateway: checks the token / signature as configured, answers as told, counts keys."""

    def __init__(self, style: str):
        self.style = style
        self.lock = threading.Lock()
        self.requests: list[httpx.Request] = []
        self.keys: Counter[str] = Counter()
        self.answers: list[tuple[int, Any]] = []  # (status, json) to answer next, then success

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if not self.verified(request):
                return httpx.Response(401, json={"code": "403", "result": {"code": "403", "msg": "bad auth"}})
            if self.answers:
                status, body = self.answers.pop(0)
                return httpx.Response(status, json=body)
            self.keys[request.headers["x-cxhub-idempotency-key"]] += 1
            return httpx.Response(200, json=self.ok())

    def ok(self) -> dict[str, Any]:
        if self.style == "json":
            return {"result": {"code": 0, "items": [{"sid": f"sid-{len(self.requests)}"}]}}
        if self.style == "form":
            return {"code": "0", "msgid": f"m{len(self.requests)}"}
        return {"status": "success"}

    def verified(self, request: httpx.Request) -> bool:
        if self.style == "json":
            return request.headers.get("authorization") == f"Bearer {TOKEN}"
        if self.style == "form":
            text = f"{request.headers['x-timestamp']}\n{request.headers['x-nonce']}\n{request.content.decode()}"
            expected = base64.b64encode(hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()).decode()
            return hmac.compare_digest(request.headers.get("x-signature", ""), expected)
        params = dict(parse_qsl(urlsplit(str(request.url)).query))
        sign = params.pop("sign", "")
        params.pop("v", None)  # part of the configured URL, not of the signed fields
        text = "&".join(f"{k}={params[k]}" for k in sorted(params)) + SECRET
        return hmac.compare_digest(sign, hashlib.md5(text.encode()).hexdigest())


def make(options: dict[str, Any], gw: Gateway, clock: FakeClock) -> Any:
    cls = get("sms_http")
    ctx = ConnectorContext(clock=clock, transport=httpx.MockTransport(gw.handler), kv=MemoryKeyValueStore(clock))
    return cls("gw", cls.Options.model_validate(options), ctx)


MESSAGE = OutboundMessage(
    key="survey:r1:tp-9",
    title="邀请评价",
    body="您好，请为本次购物 **打分**：[评价](https://s.example.com/x)",
    to=["13812345678"],
    data={"store": "SH-001", "score_url": "https://s.example.com/x", "_internal": "no"},
)


def test_json_body_with_a_bearer_token(clock: FakeClock) -> None:
    gw = Gateway("json")
    receipt = make(JSON_TOKEN, gw, clock).send(MESSAGE)
    assert receipt.message_id == "sid-1"
    (req,) = gw.requests
    assert req.method == "POST" and req.headers["content-type"].startswith("application/json")
    body = json.loads(req.content)
    assert (
        body
        == {
            "mobiles": ["13812345678"],
            "template_id": "TPL_DEFAULT",
            "params": {"store": "SH-001", "score_url": "https://s.example.com/x"},  # `_` extras left out
            "content": "【某某超市】您好，请为本次购物 打分：评价 https://s.example.com/x",
            "request_id": hashlib.sha256(b"survey:r1:tp-9").hexdigest()[:32],
            "store": "SH-001",
        }
    )
    assert gw.keys == Counter({"survey:r1:tp-9": 1})


def test_form_body_signed_with_hmac_over_the_exact_bytes(clock: FakeClock) -> None:
    gw = Gateway("form")
    msg = OutboundMessage(key="k1", title="", body="验证码 1234", to=["13812345678", "13900001111"])
    assert make(FORM_HMAC, gw, clock).send(msg).message_id == "m1"
    (req,) = gw.requests
    fields = dict(parse_qsl(req.content.decode()))
    assert fields["mobile"] == "13812345678,13900001111" and fields["msg"] == "验证码 1234"
    assert fields["ts"] == str(int(clock().timestamp())) == req.headers["x-timestamp"]
    wrong = {**FORM_HMAC, "sign": {**FORM_HMAC["sign"], "secret": "not-the-secret"}}
    with pytest.raises(PermanentError) as err:  # the fake checks the signature: 401
        make(wrong, Gateway("form"), clock).send(msg)
    assert "401" in str(err.value) and "not-the-secret" not in str(err.value)


def test_query_string_signed_with_md5_of_sorted_params_and_the_secret(clock: FakeClock) -> None:
    gw = Gateway("get")
    dst = make(GET_MD5, gw, clock)
    assert dst.send(OutboundMessage(key="k2", title="", body="hello", to=["13812345678"])).detail == "code success"
    (req,) = gw.requests
    assert req.method == "GET" and req.content == b""
    params = dict(parse_qsl(urlsplit(str(req.url)).query))
    assert params["v"] == "2" and params["phone"] == "13812345678" and len(params["sign"]) == 32
    with pytest.raises(PermanentError, match="2 numbers but the gateway takes 1"):
        dst.send(OutboundMessage(key="k3", title="", body="x", to=["13812345678", "13900001111"]))


@pytest.mark.parametrize(
    ("status", "answer", "error", "text"),
    [
        (200, {"result": {"code": 429001, "msg": "too fast"}}, Throttled, "too fast"),
        (200, {"result": {"code": 1001, "msg": "号码 13812345678 无效"}}, PermanentError, "138****5678"),
        (200, {"result": {"code": 7777, "msg": "maintenance"}}, RetriableError, "maintenance"),
        (400, {"result": {"code": 1002, "msg": "template missing"}}, PermanentError, "template missing"),
        (503, {"result": {"code": 0}}, RetriableError, "HTTP 503"),
        (200, {"unexpected": True}, RetriableError, "result code ''"),
    ],
)
def test_result_codes_are_classified(
    status: int, answer: Any, error: type[Exception], text: str, clock: FakeClock
) -> None:
    gw = Gateway("json")
    gw.answers = [(status, answer)]
    with pytest.raises(error) as exc:
        make(JSON_TOKEN, gw, clock).send(MESSAGE)
    assert type(exc.value) is error and text in str(exc.value)
    assert "13812345678" not in str(exc.value) and TOKEN not in str(exc.value)


def test_unknown_codes_can_be_permanent_and_plain_2xx_can_be_success(clock: FakeClock) -> None:
    gw = Gateway("json")
    gw.answers = [(200, {"result": {"code": 7777}})]
    with pytest.raises(PermanentError):
        make({**JSON_TOKEN, "unknown_codes": "permanent"}, gw, clock).send(MESSAGE)
    plain = {k: v for k, v in JSON_TOKEN.items() if k not in ("success_field", "message_id_field", "error_field")}
    gw.answers = [(200, "accepted")]
    assert make(plain, gw, clock).send(MESSAGE).detail == "HTTP 200"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": {"to": "{recipients}"}}, "unknown placeholder"),
        ({"headers": {"X-Sign": "{sign}"}}, "no `sign` is configured"),
        ({"token": None}, "`token` option is not set"),
        ({"method": "GET", "body": {"user": {"id": 1}}}, "body values must be strings"),
        ({"sign": {"secret": "s", "message": "{body}", "field": "sign"}}, "unknown placeholder"),
    ],
)
def test_options_are_checked_when_the_config_loads(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        get("sms_http").Options.model_validate({**JSON_TOKEN, **change})


def test_braces_can_be_literal(clock: FakeClock) -> None:
    gw = Gateway("json")
    make({**JSON_TOKEN, "body": {"content": "{{code}} {text}"}}, gw, clock).send(MESSAGE)
    assert json.loads(gw.requests[0].content)["content"].startswith("{code} 您好")


def test_through_the_worker_an_outage_delivers_each_message_exactly_once(store: Store, clock: FakeClock) -> None:
    gw = Gateway("json")
    gw.answers = [(500, {})] * 3 + [(200, {"result": {"code": 7777, "msg": "busy"}})] * 2
    dst = make(JSON_TOKEN, gw, clock)
    put(store, clock, "sms", [OutboundMessage(key=f"s-{i}", title="t", body="b", to=["13812345678"]) for i in range(6)])
    w = DeliveryWorker(store, {"sms": dst}.__getitem__, ["sms"], clock=clock, policy=FAST)
    run_until_done(w, clock, step=15, store=store)
    assert gw.keys == Counter({f"s-{i}": 1 for i in range(6)})
    assert {r["status"] for r in rows(store)} == {"sent"}
    assert {r["receipt"] for r in rows(store)} >= {"sid-6"}


class TestSmsHttpConformance(ConnectorConformance):
    connector_kind = "sms_http"
    options: ClassVar[dict[str, Any]] = JSON_TOKEN
