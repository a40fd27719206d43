"""Conformance of every push connector, option validation, the shared helpers and group commit."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pytest
from kit.push import DING_AES_KEY, OA_AES_KEY, WECOM_AES_KEY, new_rsa_pair
from pydantic import ValidationError

from hub.errors import PayloadError
from hub.group_commit import GroupCommitWriter
from hub.ingest import Ingestor
from hub.mapping import load_mapping_file
from hub.sdk.callbacks import NonceCache, check_encoding_aes_key, parse_xml, wechat_message_id
from hub.sdk.connector import RawRecord
from hub.sdk.testing import ConnectorConformance, FakeClock
from hub.store import Store

PUBLIC_KEY = new_rsa_pair().public_pem


class TestWeChatOA(ConnectorConformance):
    connector_kind = "wechat_oa"
    options: ClassVar[dict[str, Any]] = {"token": "token-secret-1", "encoding_aes_key": OA_AES_KEY, "app_id": "wx1"}


class TestWeChatMP(ConnectorConformance):
    connector_kind = "wechat_mp"
    options: ClassVar[dict[str, Any]] = {"token": "token-secret-1", "encoding_aes_key": OA_AES_KEY, "app_id": "wx1"}


class TestWeCom(ConnectorConformance):
    connector_kind = "wecom"
    options: ClassVar[dict[str, Any]] = {"token": "token-secret-1", "encoding_aes_key": WECOM_AES_KEY, "corp_id": "ww1"}


class TestDingTalk(ConnectorConformance):
    connector_kind = "dingtalk_events"
    options: ClassVar[dict[str, Any]] = {
        "token": "token-secret-1",
        "encoding_aes_key": DING_AES_KEY,
        "app_key": "ding1",
    }


class TestFeishu(ConnectorConformance):
    connector_kind = "feishu_events"
    options: ClassVar[dict[str, Any]] = {"verification_token": "vt-secret", "encrypt_key": "ek-secret"}


class TestAlipay(ConnectorConformance):
    connector_kind = "alipay"
    options: ClassVar[dict[str, Any]] = {"app_id": "2021", "alipay_public_key": PUBLIC_KEY}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("short", "43 characters"),
        ("!" * 43, "base64"),
        (OA_AES_KEY, None),
    ],
)
def test_encoding_aes_key_is_checked_when_the_config_loads(value: str, reason: str | None) -> None:
    from connectors.wechat_oa import WeChatOAOptions

    if reason is None:
        WeChatOAOptions.model_validate({"token": "token-secret-1", "app_id": "a", "encoding_aes_key": value})
        return
    with pytest.raises(ValidationError, match=reason):
        WeChatOAOptions.model_validate({"token": "token-secret-1", "app_id": "a", "encoding_aes_key": value})
    from pydantic import SecretStr

    with pytest.raises(ValueError):
        check_encoding_aes_key(SecretStr(value))


def test_alipay_public_key_is_checked_when_the_config_loads() -> None:
    from connectors.alipay import AlipayOptions

    with pytest.raises(ValidationError, match="RSA public key"):
        AlipayOptions.model_validate({"app_id": "1", "alipay_public_key": "A" * 100})


def test_parse_xml_nested_and_repeated_tags() -> None:
    xml = (
        "<xml><MsgType>event</MsgType><SubscribeMsgPopupEvent><List><TemplateId>a</TemplateId></List>"
        "<List><TemplateId>b</TemplateId></List></SubscribeMsgPopupEvent><Content><![CDATA[ 含空格 ]]></Content></xml>"
    )
    assert parse_xml(xml, source="s") == {
        "MsgType": "event",
        "SubscribeMsgPopupEvent": {"List": [{"TemplateId": "a"}, {"TemplateId": "b"}]},
        "Content": " 含空格 ",
    }
    with pytest.raises(PayloadError):
        parse_xml("<xml>text only</xml>", source="s")


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"MsgId": "123", "FromUserName": "o1", "CreateTime": "1"}, "123"),
        ({"MsgID": "55", "Event": "TEMPLATESENDJOBFINISH"}, "55"),
        ({"FromUserName": "o1", "CreateTime": "1700", "Event": "subscribe"}, "o1:1700:subscribe"),
        (
            {
                "FromUserName": "sys",
                "CreateTime": "1700",
                "Event": "change_external_contact",
                "ChangeType": "add_external_contact",
                "ExternalUserID": "wm1",
            },
            "sys:1700:change_external_contact:add_external_contact:wm1",
        ),
    ],
)
def test_wechat_message_id(msg: dict[str, str], expected: str) -> None:
    assert wechat_message_id(msg) == expected


def test_nonce_cache_allows_retries_and_refuses_a_different_body() -> None:
    clock = FakeClock()
    cache = NonceCache(clock, ttl=300, size=2)
    assert cache.claim("k1", b"a") and cache.claim("k1", b"a")
    assert not cache.claim("k1", b"b")
    clock.advance(seconds=301)
    assert cache.claim("k1", b"b")  # expired: a new request
    cache.claim("k2", b"x")
    cache.claim("k3", b"x")  # bounded: k1 is evicted
    assert cache.claim("k1", b"zzz")


def _record(i: int) -> RawRecord:
    return RawRecord(
        "s", f"m{i}", {"CreateTime": "1793584800", "MsgType": "text", "FromUserName": f"o{i}", "Content": "x"}
    )


def test_group_commit_batches_under_load_and_isolates_a_bad_request(sqlite_store: Store) -> None:
    mapping = load_mapping_file("mappings/wechat_oa.yaml")
    ingestor = Ingestor(sqlite_store, b"k")
    writer = GroupCommitWriter(ingestor, max_batch=50)
    gate = threading.Event()
    real = ingestor.ingest
    calls: list[int] = []

    def slow_first(source: str, m: Any, records: Any, **kw: Any) -> Any:
        gate.wait(5)  # hold the writer so that requests pile up behind the first batch
        calls.append(len(records))
        if any(r.external_id == "m13" for r in records):
            raise ValueError("record 13 breaks its transaction")
        return real(source, m, records, **kw)

    ingestor.ingest = slow_first  # type: ignore[method-assign]
    futures = [writer.submit("s", mapping, [_record(i)]) for i in range(40)]
    gate.set()
    outcomes = []
    for f in futures:
        try:
            f.result(10)
            outcomes.append("ok")
        except ValueError:
            outcomes.append("failed")
    writer.close()
    assert outcomes.count("failed") == 1 and outcomes[13] == "failed"
    assert max(calls) > 1  # requests were committed together
    from sqlalchemy import func, select

    from hub.store.schema import touchpoints

    with sqlite_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 39


def test_safe_mode_passive_reply_is_encrypted_for_wechat_to_read() -> None:
    import xmltodict
    from kit.peers import wechat_safe
    from kit.push import OA_APPID, OA_TOKEN
    from wechatpy.crypto import WeChatCrypto

    from connectors.wechat_oa import WeChatOAOptions, WeChatOfficialAccountSource
    from hub.sdk.connector import ConnectorContext, InboundRequest

    from .test_peers import NOW, text_message

    clock = FakeClock()
    opts = WeChatOAOptions(
        token=OA_TOKEN, encoding_aes_key=OA_AES_KEY, app_id=OA_APPID, auto_reply="已收到，稍后回复您"
    )
    src = WeChatOfficialAccountSource("oa", opts, ConnectorContext(clock=clock))
    q, body = wechat_safe(text_message(), token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, ts=NOW, nonce="r1")
    result = src.handle(InboundRequest("POST", "/hooks/oa", q, {"content-type": "text/xml"}, body))
    sealed = xmltodict.parse(result.reply.body)["xml"]
    plain = WeChatCrypto(OA_TOKEN, OA_AES_KEY, OA_APPID).decrypt_message(
        result.reply.body, sealed["MsgSignature"], sealed["TimeStamp"], sealed["Nonce"]
    )
    reply = xmltodict.parse(plain)["xml"]
    assert reply["Content"] == "已收到，稍后回复您"
    assert reply["ToUserName"] == "oCustomer1" and reply["MsgType"] == "text"


def test_wechatpy_runs_on_the_cryptography_backend() -> None:
    """PLATFORMS.md gotcha: with pycryptodome (pulled in by lark-oapi / alipay) wechatpy's cipher is
    stateful; the cryptography backend must be the one in use."""
    from wechatpy.crypto.base import WeChatCipher

    assert WeChatCipher.__module__ == "wechatpy.crypto.cryptography"
