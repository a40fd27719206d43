"""Hostile and broken input: bad or missing signatures, stale timestamps, XML bombs, oversized
bodies, wrong content types, store failures, unmappable and unparsable verified payloads, and no
secret in any response or log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.peers import alipay_notify, dingtalk_push, feishu_push, wechat_json_safe, wechat_safe, wecom_push
from kit.push import (
    DING_AES_KEY,
    DING_APP_KEY,
    DING_TOKEN,
    FEISHU_ENCRYPT_KEY,
    MP_AES_KEY,
    MP_APPID,
    MP_TOKEN,
    OA_AES_KEY,
    OA_APPID,
    OA_TOKEN,
    SECRETS,
    WECOM_AES_KEY,
    WECOM_CORP_ID,
    WECOM_TOKEN,
    Hub,
    RsaPair,
    make_hub,
)
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from hub.sdk.testing import FakeClock
from hub.store.schema import inbox, quarantine

from .test_peers import NOW, card_action, text_message, trade_params

XML = {"Content-Type": "text/xml"}
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def valid_request(source: str, keys: RsaPair, nonce: str = "s1") -> tuple[dict[str, str], bytes, dict[str, str]]:
    """(query, body, headers) of an authentic push to ``source``."""
    if source == "oa":
        q, b = wechat_safe(text_message(), token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, ts=NOW, nonce=nonce)
        return q, b, XML
    if source == "mp":
        msg = {"FromUserName": "o1", "CreateTime": NOW, "MsgType": "text", "Content": "hi", "MsgId": 1}
        q, b = wechat_json_safe(msg, token=MP_TOKEN, aes_key=MP_AES_KEY, appid=MP_APPID, ts=NOW, nonce=nonce)
        return q, b, JSON
    if source == "wecom":
        q, b = wecom_push(
            text_message(), token=WECOM_TOKEN, aes_key=WECOM_AES_KEY, corp_id=WECOM_CORP_ID, ts=NOW, nonce=nonce
        )
        return q, b, XML
    if source == "ding":
        ev = {"EventType": "bpms_instance_change", "processInstanceId": "p1", "createTime": NOW * 1000, "type": "start"}
        q, b = dingtalk_push(
            ev, token=DING_TOKEN, aes_key=DING_AES_KEY, app_key=DING_APP_KEY, ts_ms=NOW * 1000, nonce=nonce
        )
        return q, b, JSON
    if source == "feishu":
        h, b = feishu_push(card_action(), encrypt_key=FEISHU_ENCRYPT_KEY, ts=NOW, nonce=nonce)
        return {}, b, h
    if source == "alipay":
        return {}, alipay_notify(trade_params(), keys.private_pkcs1), FORM
    raise AssertionError(source)


SOURCES = ["oa", "mp", "wecom", "ding", "feishu", "alipay"]


def tamper(
    source: str, q: dict[str, str], body: bytes, headers: dict[str, str]
) -> tuple[dict[str, str], bytes, dict[str, str]]:
    """The same request with its signature changed."""
    if source in ("oa", "mp", "wecom"):
        return {**q, "msg_signature": "0" * 40}, body, headers
    if source == "ding":
        return {**q, "signature": "0" * 40}, body, headers
    if source == "feishu":
        return q, body, {**headers, "X-Lark-Signature": "0" * 64}
    return q, body.replace(b"sign=", b"sign=AAAA"), headers


def failures(source: str) -> float:
    return REGISTRY.get_sample_value("cxhub_hook_signature_failures_total", {"source": source}) or 0.0


@pytest.mark.parametrize("source", SOURCES)
def test_valid_push_is_stored_and_bad_signature_refused_with_nothing_stored(
    sqlite_hub: Hub, alipay_keys: RsaPair, source: str
) -> None:
    q, body, headers = valid_request(source, alipay_keys)
    before = failures(source)
    bq, bbody, bheaders = tamper(source, q, body, headers)
    r = sqlite_hub.client.post(f"/hooks/{source}", params=bq, content=bbody, headers=bheaders)
    assert r.status_code == 401, r.text
    assert sqlite_hub.stored_anything() == 0
    assert failures(source) == before + 1
    r = sqlite_hub.client.post(f"/hooks/{source}", params=q, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert sqlite_hub.count(source=source) == 1


@pytest.mark.parametrize("source", SOURCES)
def test_missing_signature_is_refused(sqlite_hub: Hub, alipay_keys: RsaPair, source: str) -> None:
    _, body, headers = valid_request(source, alipay_keys)
    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-lark")}
    if source == "alipay":
        body = b"&".join(p for p in body.split(b"&") if not p.startswith(b"sign="))
    r = sqlite_hub.client.post(f"/hooks/{source}", content=body, headers=headers)
    assert r.status_code in (400, 401)
    assert sqlite_hub.stored_anything() == 0


@pytest.mark.parametrize("source", ["oa", "mp", "wecom", "ding", "feishu"])
def test_stale_timestamp_is_refused(sqlite_hub: Hub, alipay_keys: RsaPair, source: str) -> None:
    q, body, headers = valid_request(source, alipay_keys)
    sqlite_hub.clock.advance(seconds=301)
    r = sqlite_hub.client.post(f"/hooks/{source}", params=q, content=body, headers=headers)
    assert r.status_code == 401 and "replay window" in r.text
    assert sqlite_hub.stored_anything() == 0


@pytest.fixture
def windowless_hub(tmp_path: Path, alipay_keys: RsaPair) -> Iterator[Hub]:
    with make_hub(f"sqlite:///{tmp_path / 'w0.db'}", alipay_keys, FakeClock(), window=0) as hub:
        yield hub


def test_window_zero_disables_the_timestamp_check(windowless_hub: Hub, alipay_keys: RsaPair) -> None:
    q, body, headers = valid_request("oa", alipay_keys)
    windowless_hub.clock.advance(days=30)
    assert windowless_hub.client.post("/hooks/oa", params=q, content=body, headers=headers).status_code == 200


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><Encrypt>&lol3;</Encrypt></xml>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Encrypt>&xxe;</Encrypt></xml>"""


@pytest.mark.parametrize("body", [BOMB, XXE, b"<xml><Encrypt>unclosed", b"\xff\xfe garbage"])
@pytest.mark.parametrize("source", ["oa", "wecom"])
def test_hostile_xml_is_refused_before_anything_else(sqlite_hub: Hub, source: str, body: bytes) -> None:
    q = {"msg_signature": "0" * 40, "timestamp": str(NOW), "nonce": "x", "encrypt_type": "aes"}
    r = sqlite_hub.client.post(f"/hooks/{source}", params=q, content=body, headers=XML)
    assert r.status_code == 400
    assert "passwd" not in r.text and "lollol" not in r.text
    assert sqlite_hub.stored_anything() == 0


@pytest.mark.parametrize("source", SOURCES)
def test_oversized_body_is_413(sqlite_hub: Hub, source: str) -> None:
    r = sqlite_hub.client.post(f"/hooks/{source}", content=b"x" * 70_000, headers=XML)
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("source", "content_type"),
    [
        ("oa", "application/json"),
        ("wecom", "multipart/form-data"),
        ("ding", "text/xml"),
        ("feishu", "text/xml"),
        ("alipay", "application/json"),
    ],
)
def test_wrong_content_type_is_415(sqlite_hub: Hub, alipay_keys: RsaPair, source: str, content_type: str) -> None:
    q, body, headers = valid_request(source, alipay_keys)
    r = sqlite_hub.client.post(
        f"/hooks/{source}", params=q, content=body, headers={**headers, "Content-Type": content_type}
    )
    assert r.status_code == 415 and "expected" in r.text
    assert sqlite_hub.stored_anything() == 0


def test_unknown_source_and_unsupported_get(sqlite_hub: Hub) -> None:
    assert sqlite_hub.client.post("/hooks/nope", content=b"{}").status_code == 404
    assert sqlite_hub.client.get("/hooks/alipay").status_code == 405


def test_store_failure_is_503_and_the_platform_retry_is_stored_once(
    sqlite_hub: Hub, alipay_keys: RsaPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, body, headers = valid_request("oa", alipay_keys)
    real = sqlite_hub.rt.ingestor.ingest

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is down"))

    monkeypatch.setattr(sqlite_hub.rt.ingestor, "ingest", broken)
    r = sqlite_hub.client.post("/hooks/oa", params=q, content=body, headers=headers)
    assert r.status_code == 503
    assert "database is down" not in r.text
    monkeypatch.setattr(sqlite_hub.rt.ingestor, "ingest", real)
    for _ in range(2):  # WeChat retries the same push
        assert sqlite_hub.client.post("/hooks/oa", params=q, content=body, headers=headers).text == "success"
    assert sqlite_hub.count(source="oa") == 1


def test_verified_but_unmappable_is_quarantined_and_answered(sqlite_hub: Hub) -> None:
    xml = text_message("8001").replace(f"<CreateTime>{NOW - 1}</CreateTime>", "<CreateTime>yesterday</CreateTime>")
    q, body = wechat_safe(xml, token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, ts=NOW, nonce="u1")
    r = sqlite_hub.client.post("/hooks/oa", params=q, content=body, headers=XML)
    assert (r.status_code, r.text) == (200, "success")
    (row,) = sqlite_hub.quarantined("oa")
    assert row["stage"] == "mapping" and "occurred_at" in row["reason"]
    assert sqlite_hub.count(source="oa") == 0


def test_verified_but_unparsable_plaintext_is_quarantined_and_answered(sqlite_hub: Hub) -> None:
    q, body = wechat_safe("this is not <xml", token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, ts=NOW, nonce="u2")
    r = sqlite_hub.client.post("/hooks/oa", params=q, content=body, headers=XML)
    assert (r.status_code, r.text) == (200, "success")
    (row,) = sqlite_hub.quarantined("oa")
    assert row["stage"] == "parse" and "not XML" in row["reason"]
    assert row["payload"] == {"body": "this is not <xml"}


def test_no_secret_in_any_response_or_log_line(
    sqlite_hub: Hub, alipay_keys: RsaPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for source in SOURCES:
        q, body, headers = valid_request(source, alipay_keys, nonce="secret-check")
        for req in [(q, body, headers), tamper(source, q, body, headers), ({}, b"{}", headers)]:
            r = sqlite_hub.client.post(f"/hooks/{source}", params=req[0], content=req[1], headers=req[2])
            texts.append(r.text)
    texts.append(sqlite_hub.client.get("/metrics").text)
    blob = "\n".join(texts) + caplog.text
    for secret in SECRETS:
        assert secret not in blob
    with sqlite_hub.rt.store.connect() as conn:
        from sqlalchemy import select

        stored = str(conn.execute(select(inbox.c.payload)).all()) + str(
            conn.execute(select(quarantine.c.payload)).all()
        )
    for secret in SECRETS:
        assert secret not in stored
