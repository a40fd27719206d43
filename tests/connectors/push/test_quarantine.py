"""The quarantine promise, receiver by receiver: a payload that passed verification but does not
parse (not UTF-8, not XML / JSON, not the expected shape, nested past what a parser takes) is
stored in the quarantine with the reason and the raw payload, replayable, and the platform gets
the reply that stops its retries. The same payload without a valid signature is refused (401) and
nothing is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kit.peers import (
    alipay_notify,
    dingtalk_push,
    feishu_push,
    feishu_signed,
    standard_webhook,
    wechat_json_safe,
    wechat_plain,
    wechat_safe,
    wecom_push,
)
from kit.push import (
    ALIPAY_APP_ID,
    DING_AES_KEY,
    DING_APP_KEY,
    DING_TOKEN,
    FEISHU_ENCRYPT_KEY,
    FEISHU_TOKEN,
    MP_AES_KEY,
    MP_APPID,
    MP_TOKEN,
    OA_AES_KEY,
    OA_APPID,
    OA_TOKEN,
    PLAIN_TOKEN,
    WEBHOOK_SECRET,
    WECOM_AES_KEY,
    WECOM_CORP_ID,
    WECOM_TOKEN,
    Hub,
    RsaPair,
)
from wechatpy.crypto import PrpCrypto

from hub.replay import replay_quarantined

from .test_peers import NOW

XML = {"Content-Type": "text/xml"}
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

NOT_UTF8 = b"<xml><Content>\xff\xfe\xc3</Content></xml>"
DEEP_XML = b"<xml>" + b"<a>" * 3000 + b"x" + b"</a>" * 3000 + b"</xml>"
DEEP_JSON = b"[" * 3000 + b"]" * 3000


@dataclass(frozen=True)
class Push:
    """A request (query, body, headers), the same request with its proof broken, and what to expect."""

    source: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    unsigned: tuple[dict[str, str], bytes, dict[str, str]]
    reason: str  # a word of the quarantine reason
    raw: bytes | None  # the raw payload the quarantine row must give back (None: a form's fields)


def _wechat(source: str, plaintext: bytes, reason: str, *, token: str, aes_key: str, appid: str, nonce: str) -> Push:
    q, body = wechat_safe(plaintext, token=token, aes_key=aes_key, appid=appid, ts=NOW, nonce=nonce)
    return Push(source, q, body, XML, ({**q, "msg_signature": "0" * 40}, body, XML), reason, plaintext)


def oa_not_utf8() -> Push:
    return _wechat("oa", NOT_UTF8, "UTF-8", token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, nonce="q1")


def oa_deep_xml() -> Push:
    return _wechat("oa", DEEP_XML, "nested", token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, nonce="q2")


def oa_plain_not_utf8() -> Push:
    q, body = wechat_plain(NOT_UTF8, token=PLAIN_TOKEN, ts=NOW, nonce="q3")
    return Push("oa_plain", q, body, XML, ({**q, "signature": "0" * 40}, body, XML), "UTF-8", NOT_UTF8)


def mp_json_not_utf8() -> Push:
    plaintext = b'{"MsgType": "text", "Content": "\xff\xfe"}'
    q, body = wechat_json_safe(plaintext, token=MP_TOKEN, aes_key=MP_AES_KEY, appid=MP_APPID, ts=NOW, nonce="q4")
    return Push("mp", q, body, JSON, ({**q, "msg_signature": "0" * 40}, body, JSON), "UTF-8", plaintext)


def mp_deep_json() -> Push:
    plaintext = b"{" + b'"a":{' * 3000 + b"}" * 3001
    q, body = wechat_json_safe(plaintext, token=MP_TOKEN, aes_key=MP_AES_KEY, appid=MP_APPID, ts=NOW, nonce="q5")
    return Push("mp", q, body, JSON, ({**q, "msg_signature": "0" * 40}, body, JSON), "nested", plaintext)


def wecom_not_utf8() -> Push:
    q, body = wecom_push(NOT_UTF8, token=WECOM_TOKEN, aes_key=WECOM_AES_KEY, corp_id=WECOM_CORP_ID, ts=NOW, nonce="q6")
    return Push("wecom", q, body, XML, ({**q, "msg_signature": "0" * 40}, body, XML), "UTF-8", NOT_UTF8)


def _ding(plaintext: bytes, reason: str, nonce: str) -> Push:
    q, body = dingtalk_push(
        plaintext, token=DING_TOKEN, aes_key=DING_AES_KEY, app_key=DING_APP_KEY, ts_ms=NOW * 1000, nonce=nonce
    )
    return Push("ding", q, body, JSON, ({**q, "signature": "0" * 40}, body, JSON), reason, plaintext)


def ding_not_utf8() -> Push:
    return _ding(b'{"EventType": "\xff\xfe"}', "UTF-8", "q7")


def ding_deep_json() -> Push:
    return _ding(DEEP_JSON, "nested", "q8")


def _feishu(plaintext: bytes, reason: str, nonce: str, raw: bytes | None = None) -> Push:
    h, body = feishu_push(plaintext, encrypt_key=FEISHU_ENCRYPT_KEY, ts=NOW, nonce=nonce)
    bad = {**h, "X-Lark-Signature": "0" * 64}
    return Push("feishu", {}, body, h, ({}, body, bad), reason, plaintext if raw is None else raw)


def feishu_not_json() -> Push:
    # the verification token is a credential: even in a body that does not parse it is not stored
    plaintext = b'{"schema": "2.0", "header": {"token": "' + FEISHU_TOKEN.encode() + b'", "event_id": '
    return _feishu(plaintext, "not JSON", "q9", raw=plaintext.replace(FEISHU_TOKEN.encode(), b"***"))


def feishu_not_an_object() -> Push:
    return _feishu(b'[{"schema": "2.0"}]', "not a JSON object", "q10")


def feishu_not_utf8() -> Push:
    return _feishu(b'{"schema": "2.0", "event": "\xff\xfe"}', "UTF-8", "q11")


def feishu_signed_body_not_json() -> Push:
    """The signature covers the raw body: a signed body that is not even the JSON envelope."""
    body = b"encrypt=not-the-json-envelope"
    h = feishu_signed(body, encrypt_key=FEISHU_ENCRYPT_KEY, ts=NOW, nonce="q12")
    return Push("feishu", {}, body, h, ({}, body, {**h, "X-Lark-Signature": "0" * 64}), "not JSON", body)


def alipay_gateway_deep_biz_content(keys: RsaPair) -> Push:
    params = {
        "msg_method": "alipay.merchant.order.sync",
        "notify_id": "gw-deep-1",
        "app_id": ALIPAY_APP_ID,
        "charset": "utf-8",
        "version": "1.1",
        "utc_timestamp": str(NOW * 1000),
        "biz_content": "[" * 3000 + "]" * 3000,
    }
    body = alipay_notify(params, keys.private_pkcs1)
    return Push("alipay_gw", {}, body, FORM, ({}, body.replace(b"sign=", b"sign=AAAA"), FORM), "biz_content", None)


def _webhook(body: bytes, reason: str, msg_id: str) -> Push:
    h = standard_webhook(body, secret=WEBHOOK_SECRET, msg_id=msg_id, ts=NOW)
    bad = {**h, "webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode()}
    return Push("hook", {}, body, h, ({}, body, bad), reason, body)


def webhook_not_json() -> Push:
    return _webhook(b"response_id=1&nps=3", "not JSON", "msg_q13")


def webhook_not_utf8() -> Push:
    return _webhook(b'{"response_id": "\xff\xfe"}', "UTF-8", "msg_q14")


def webhook_deep_json() -> Push:
    return _webhook(DEEP_JSON, "nested", "msg_q15")


CASES: list[Callable[..., Push]] = [
    oa_not_utf8,
    oa_deep_xml,
    oa_plain_not_utf8,
    mp_json_not_utf8,
    mp_deep_json,
    wecom_not_utf8,
    ding_not_utf8,
    ding_deep_json,
    feishu_not_json,
    feishu_not_an_object,
    feishu_not_utf8,
    feishu_signed_body_not_json,
    alipay_gateway_deep_biz_content,
    webhook_not_json,
    webhook_not_utf8,
    webhook_deep_json,
]


def success_reply(source: str, status: int, content: bytes) -> bool:
    """The reply that tells each platform the push was taken (docs/push.md, "Replies")."""
    if status != 200:
        return False
    if source in ("oa", "oa_plain", "mp", "alipay_gw"):
        return content == b"success"
    if source == "wecom":
        return content == b""
    if source == "feishu":
        return json.loads(content) == {}
    if source == "ding":
        reply = json.loads(content)
        key = base64.b64decode(DING_AES_KEY + "=")
        return bool(PrpCrypto(key).decrypt(reply["encrypt"], DING_APP_KEY) == "success")
    if source == "hook":
        return bool(json.loads(content)["ok"])
    raise AssertionError(source)


def raw_payload(payload: Any) -> bytes:
    """The raw bytes a quarantine row keeps: as text, or base64 when they are not UTF-8."""
    if "body_base64" in payload:
        return base64.b64decode(payload["body_base64"])
    return str(payload["body"]).encode("utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_verified_but_unparsable_is_quarantined_replayable_and_answered(
    sqlite_hub: Hub, alipay_keys: RsaPair, case: Callable[..., Push]
) -> None:
    push = case(alipay_keys) if case is alipay_gateway_deep_biz_content else case()
    hub = sqlite_hub
    q, body, headers = push.unsigned
    r = hub.client.post(f"/hooks/{push.source}", params=q, content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert hub.stored_anything() == 0

    r = hub.client.post(f"/hooks/{push.source}", params=push.query, content=push.body, headers=push.headers)
    assert success_reply(push.source, r.status_code, r.content), (r.status_code, r.text)
    (row,) = hub.quarantined(push.source)
    assert row["stage"] == "parse" and row["status"] == "open"
    assert push.reason in row["reason"], row["reason"]
    if push.raw is not None:
        assert raw_payload(row["payload"]) == push.raw
    else:  # a form: its verified fields, the one that does not parse kept as it came
        assert row["payload"]["biz_content"].startswith("[[[")
    assert hub.count(source=push.source) == 0

    # `cxhub replay` takes it (it stays quarantined until a mapping can use it), without failing
    result = replay_quarantined(hub.rt.ingestor, hub.rt.mappings, source=push.source)
    assert result.read == 1 and result.quarantined + result.filtered + result.stored == 1
    (again,) = hub.quarantined(push.source)
    assert again["payload"] == row["payload"]


@pytest.mark.parametrize("content_type", ["text/xml", "application/x-www-form-urlencoded", "text/plain"])
def test_webhook_wrong_content_type_is_415_before_verification(sqlite_hub: Hub, content_type: str) -> None:
    body = json.dumps(
        {"response_id": "r-77", "survey_id": "s", "submitted_at": "2026-11-02T10:00:00+08:00", "scores": {"nps": 9}}
    ).encode()
    h = standard_webhook(body, secret=WEBHOOK_SECRET, msg_id="msg_ct", ts=NOW)
    for headers in ({**h, "Content-Type": content_type}, {"Content-Type": content_type}):  # signed, unsigned
        r = sqlite_hub.client.post("/hooks/hook", content=body, headers=headers)
        assert r.status_code == 415 and "application/json" in r.text, r.text
    assert sqlite_hub.stored_anything() == 0
    # the same request as JSON (with a charset, or with no content type at all) is stored
    for i, ct in enumerate(["application/json; charset=utf-8", None]):
        h = standard_webhook(body, secret=WEBHOOK_SECRET, msg_id=f"msg_ct{i}", ts=NOW)
        headers = {k: v for k, v in h.items() if k != "Content-Type"}
        if ct:
            headers["Content-Type"] = ct
        r = sqlite_hub.client.post("/hooks/hook", content=body, headers=headers)
        assert r.status_code == 200 and r.json() == {"ok": True, "received": 1}, r.text
    assert [e["feedback"]["nps"] for e in sqlite_hub.events("hook")] == [9, 9]
