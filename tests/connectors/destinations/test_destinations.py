"""Each destination against the fake platform (in process and over real HTTP) and against respx."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx
import pytest
import respx
from kit.destinations import DestinationFactory, options_for
from kit.fakes import FakePlatform, serve
from kit.push import new_rsa_pair

from hub.errors import PermanentError, RetriableError
from hub.sdk.connector import Button, MemoryKeyValueStore, OutboundMessage
from hub.sdk.policy import Throttled
from hub.sdk.testing import ConnectorConformance

KINDS = [
    ("dingtalk_robot", {}, "dingtalk_robot", []),
    ("dingtalk_work", {}, "dingtalk_work", ["manager01"]),
    ("wecom_robot", {}, "wecom_robot", []),
    ("wecom_app", {}, "wecom_app", ["zhangsan"]),
    ("feishu_bot", {}, "feishu_bot", []),
    ("feishu_app", {}, "feishu_app", ["ou_abc"]),
    ("wechat_message", {"api": "oa_template"}, "wechat_cgi-bin_message_template_send", ["oOPENID1"]),
    ("wechat_message", {"api": "oa_subscribe"}, "wechat_cgi-bin_message_subscribe_bizsend", ["oOPENID1"]),
    ("wechat_message", {"api": "mp_subscribe"}, "wechat_cgi-bin_message_subscribe_send", ["oOPENID1"]),
    ("alipay_message", {}, "alipay", ["2088102116773037"]),
    ("sms", {}, "sms", ["13812345678"]),
]


def message(key: str = "rule:1:tp-1", to: list[str] | None = None, **kw: Any) -> OutboundMessage:
    base: dict[str, Any] = {
        "key": key,
        "title": "差评提醒 Negative review",
        "body": "门店 **SH-001** 收到 1 星评价：\n\n> 牛奶过期了",
        "to": to or [],
        "buttons": [Button("确认 Acknowledge", "https://hub.example/cases/1/ack?sig=x")],
        # an extra (``_``) every connector leaves out of the template: the form id Alipay's API requires
        "data": {"keyword1": "SH-001", "keyword2": "1 星", "_form_id": "2026110222001400001234567890"},
        "url": "https://hub.example/cases/1",
    }
    base.update(kw)
    return OutboundMessage(**base)


@pytest.fixture
def alipay_fake(fake: FakePlatform, rsa_keys: tuple[str, str]) -> FakePlatform:
    fake.alipay_public_key = rsa_keys[1]
    return fake


@pytest.mark.parametrize(("kind", "extra", "api", "to"), KINDS, ids=[f"{k[0]}-{k[2]}" for k in KINDS])
def test_each_destination_sends_through_the_fake(
    kind: str,
    extra: dict[str, Any],
    api: str,
    to: list[str],
    alipay_fake: FakePlatform,
    make_destination: DestinationFactory,
) -> None:
    dst = make_destination(kind, transport=httpx.MockTransport(alipay_fake.handler), **extra)
    receipt = dst.send(message(to=to))
    assert alipay_fake.keys(api) == {"rule:1:tp-1": 1}, (alipay_fake.codes, alipay_fake.requests)
    assert receipt.detail


@pytest.mark.parametrize(
    ("kind", "extra", "api", "to"), KINDS[:7] + KINDS[9:], ids=[f"{k[0]}-{k[2]}" for k in KINDS[:7] + KINDS[9:]]
)
def test_each_destination_over_real_http(
    kind: str,
    extra: dict[str, Any],
    api: str,
    to: list[str],
    alipay_fake: FakePlatform,
    make_destination: DestinationFactory,
) -> None:
    with serve(alipay_fake) as url:
        dst = make_destination(kind, base_url=url, **extra)
        dst.send(message(to=to))
        dst.close()
    assert alipay_fake.keys(api) == {"rule:1:tp-1": 1}


@pytest.mark.parametrize(
    ("kind", "bad", "code"),
    [
        ("dingtalk_robot", {"secret": "SECwrong"}, 310000),
        ("feishu_bot", {"secret": "wrong"}, 19021),
        ("sms", {"access_key_secret": "wrong"}, "SignatureDoesNotMatch"),
        ("wecom_robot", {"key": "nope"}, 93000),
        ("dingtalk_work", {"app_secret": "wrong"}, 40089),
        ("wechat_message", {"app_secret": "wrong"}, 40125),
    ],
)
def test_bad_signature_or_credentials_are_permanent_and_secret_free(
    kind: str, bad: dict[str, Any], code: Any, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination(kind, transport=httpx.MockTransport(fake.handler), **bad)
    to = ["u1"] if kind in ("dingtalk_work", "wechat_message") else ["13812345678"] if kind == "sms" else []
    with pytest.raises(PermanentError) as exc:
        dst.send(message(to=to))
    assert exc.value.code == code
    for secret in bad.values():
        assert secret not in str(exc.value)


def test_dingtalk_robot_buttons_become_an_action_card_with_mentions(
    fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("dingtalk_robot", transport=httpx.MockTransport(fake.handler))
    two = [Button("确认", "https://h/ack"), Button("转派", "https://h/reassign")]
    dst.send(message(buttons=two, mention=["13812345678", "staff007"]))
    body = fake.accepted[-1].body
    assert body["msgtype"] == "actionCard"
    assert body["actionCard"]["btns"] == [
        {"title": "确认", "actionURL": "https://h/ack"},
        {"title": "转派", "actionURL": "https://h/reassign"},
    ]
    assert body["at"] == {"atMobiles": ["13812345678"], "atUserIds": ["staff007"], "isAtAll": False}
    assert "@13812345678" in body["actionCard"]["text"]  # DingTalk only notifies mobiles named in the text
    dst.send(message(key="k2"))
    single = fake.accepted[-1].body["actionCard"]
    assert single["singleTitle"] == "确认 Acknowledge" and single["singleURL"].endswith("/ack?sig=x")
    dst.send(message(key="k3", buttons=[]))
    assert fake.accepted[-1].body["msgtype"] == "markdown"
    assert "https://hub.example/cases/1" in fake.accepted[-1].body["markdown"]["text"]


def test_feishu_bot_buttons_become_an_interactive_card(
    fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("feishu_bot", transport=httpx.MockTransport(fake.handler))
    dst.send(message())
    body = fake.accepted[-1].body
    assert body["msg_type"] == "interactive"
    actions = next(e for e in body["card"]["elements"] if e["tag"] == "action")["actions"]
    assert [(a["text"]["content"], a["url"]) for a in actions] == [
        ("确认 Acknowledge", "https://hub.example/cases/1/ack?sig=x"),
        ("查看详情", "https://hub.example/cases/1"),
    ]
    dst2 = make_destination("feishu_bot", transport=httpx.MockTransport(fake.handler), format="post")
    dst2.send(message(key="post"))
    post = fake.accepted[-1].body["content"]["post"]["zh_cn"]
    assert post["title"] == "差评提醒 Negative review"
    assert {"tag": "a", "text": "确认 Acknowledge", "href": "https://hub.example/cases/1/ack?sig=x"} in post["content"][
        -1
    ]


def test_wecom_robot_markdown_is_trimmed_to_4096_bytes_on_a_character_boundary(
    fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("wecom_robot", transport=httpx.MockTransport(fake.handler))
    long = "顾客反馈：" + "牛奶过期" * 1000  # ~12 KB of three-byte characters
    dst.send(message(body=long, buttons=[], url=None))
    content = fake.accepted[-1].body["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096
    assert content.endswith("…") and "牛奶过期" in content
    card = make_destination("wecom_robot", transport=httpx.MockTransport(fake.handler), buttons_as="template_card")
    card.send(message(key="card"))
    tc = fake.accepted[-1].body["template_card"]
    assert tc["card_type"] == "text_notice"
    assert (
        tc["jump_list"][0]["url"].endswith("/ack?sig=x") and tc["card_action"]["url"] == "https://hub.example/cases/1"
    )
    card.send(message(key="mob", mention=["13812345678"]))
    text = fake.accepted[-1].body
    assert text["msgtype"] == "text" and text["text"]["mentioned_mobile_list"] == ["13812345678"]


@pytest.mark.parametrize(
    ("kind", "platform", "to"),
    [
        ("wecom_app", "wecom", ["zhangsan"]),
        ("dingtalk_work", "dingtalk", ["m1"]),
        ("feishu_app", "feishu", ["ou_1"]),
        ("wechat_message", "wechat", ["oOPENID"]),
    ],
)
def test_expired_token_is_refreshed_once_and_the_send_retried(
    kind: str, platform: str, to: list[str], fake: FakePlatform, make_destination: DestinationFactory, clock: Any
) -> None:
    kv = MemoryKeyValueStore(clock)
    dst = make_destination(kind, transport=httpx.MockTransport(fake.handler), kv=kv)
    dst.send(message(key="a", to=to))
    assert fake.token_fetches[platform] == 1
    dst.send(message(key="b", to=to))
    assert fake.token_fetches[platform] == 1  # cached in the shared store
    fake.expire_token(platform)
    dst.send(message(key="c", to=to))
    assert fake.token_fetches[platform] == 2
    assert sum(fake.keys().values()) == 3
    # a second connector (another process) sharing the store uses the refreshed token
    other = make_destination(kind, transport=httpx.MockTransport(fake.handler), kv=kv)
    other.send(message(key="d", to=to))
    assert fake.token_fetches[platform] == 2


@pytest.mark.parametrize(
    ("kind", "to", "answer", "status", "expected", "code"),
    [
        ("dingtalk_robot", [], {"errcode": 130101, "errmsg": "send too fast"}, 200, Throttled, 130101),
        ("dingtalk_robot", [], {"errcode": -1, "errmsg": "busy"}, 200, RetriableError, -1),
        ("wecom_robot", [], {"errcode": 45009, "errmsg": "api freq out of limit"}, 200, Throttled, 45009),
        ("wecom_robot", [], {"errcode": 40058, "errmsg": "too long"}, 200, PermanentError, 40058),
        ("feishu_bot", [], {"code": 11232, "msg": "frequency limited"}, 200, Throttled, 11232),
        ("feishu_bot", [], {"code": 19024, "msg": "Key Words Not Found"}, 400, PermanentError, 19024),
        ("feishu_bot", [], {"code": 0}, 503, RetriableError, 503),
        ("wechat_message", ["o1"], {"errcode": 43101, "errmsg": "user refuse"}, 200, PermanentError, 43101),
        (
            "wechat_message",
            ["o1"],
            {"errcode": 45015, "errmsg": "response out of time limit"},
            200,
            PermanentError,
            45015,
        ),
        ("wechat_message", ["o1"], {"errcode": 43004, "errmsg": "require subscribe"}, 200, PermanentError, 43004),
        ("wechat_message", ["o1"], {"errcode": 45009, "errmsg": "freq"}, 200, Throttled, 45009),
        ("wechat_message", ["o1"], {"errcode": -1, "errmsg": "system busy"}, 200, RetriableError, -1),
        (
            "wecom_app",
            ["u1"],
            {"errcode": 81013, "errmsg": "user & party & tag all invalid"},
            200,
            PermanentError,
            81013,
        ),
        ("wecom_app", ["u1"], {"errcode": 0, "invaliduser": "u1"}, 200, PermanentError, "invaliduser"),
        (
            "sms",
            ["13812345678"],
            {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "x"},
            200,
            PermanentError,
            "isv.MOBILE_NUMBER_ILLEGAL",
        ),
        (
            "sms",
            ["13812345678"],
            {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "x"},
            200,
            RetriableError,
            "isv.BUSINESS_LIMIT_CONTROL",
        ),
        ("dingtalk_work", ["m1"], {"errcode": 143103, "errmsg": "qpm"}, 200, Throttled, 143103),
        (
            "feishu_app",
            ["ou_1"],
            {"code": 230013, "msg": "Bot has NO availability to this user."},
            400,
            PermanentError,
            230013,
        ),
    ],
)
@respx.mock
def test_vendor_codes_are_classified_per_platform(
    kind: str,
    to: list[str],
    answer: dict[str, Any],
    status: int,
    expected: type[Exception],
    code: Any,
    make_destination: DestinationFactory,
) -> None:
    base = "https://platform.test"
    respx.route(path__regex=r".*(gettoken|stable_token|tenant_access_token).*").mock(
        return_value=httpx.Response(
            200, json={"errcode": 0, "code": 0, "access_token": "T", "tenant_access_token": "T", "expires_in": 7200}
        )
    )
    respx.route(host="platform.test").mock(return_value=httpx.Response(status, json=answer))
    dst = make_destination(kind, base_url=base)
    with pytest.raises(expected) as exc:
        dst.send(message(to=to))
    assert getattr(exc.value, "code", None) == code
    if expected is Throttled:
        assert exc.value.retry_after  # type: ignore[attr-defined]
    if expected is RetriableError:
        assert type(exc.value) is RetriableError


@respx.mock
def test_retry_after_and_feishu_reset_header_are_passed_on(make_destination: DestinationFactory) -> None:
    respx.post(url__regex=r".*tenant_access_token.*").mock(
        return_value=httpx.Response(200, json={"code": 0, "tenant_access_token": "T", "expire": 7200})
    )
    respx.post(url__regex=r".*/im/v1/messages.*").mock(
        return_value=httpx.Response(
            429,
            headers={"x-ogw-ratelimit-reset": "7"},
            json={"code": 99991400, "msg": "request trigger frequency limit"},
        )
    )
    dst = make_destination("feishu_app", base_url="https://open.feishu.test")
    with pytest.raises(Throttled) as exc:
        dst.send(message(to=["ou_1"]))
    assert exc.value.retry_after == 7


@respx.mock
def test_dingtalk_robot_signature_matches_the_documented_recipe(
    make_destination: DestinationFactory, clock: Any
) -> None:
    import base64
    import hashlib
    import hmac
    from urllib.parse import parse_qs, urlparse

    route = respx.post(host="oapi.test", path="/robot/send").mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})
    )
    dst = make_destination("dingtalk_robot", base_url="https://oapi.test")
    dst.send(message())
    q = parse_qs(urlparse(str(route.calls.last.request.url)).query)
    ts = q["timestamp"][0]
    assert int(ts) == int(clock().timestamp() * 1000)
    secret = options_for("dingtalk_robot", "")["secret"]
    expect = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()).decode()
    assert q["sign"] == [expect]
    assert route.calls.last.request.headers["x-cxhub-idempotency-key"] == "rule:1:tp-1"


@respx.mock
def test_wechat_oa_template_payload(make_destination: DestinationFactory) -> None:
    respx.post(url__regex=r".*stable_token.*").mock(
        return_value=httpx.Response(200, json={"access_token": "T", "expires_in": 7200})
    )
    route = respx.post(url__regex=r".*/cgi-bin/message/template/send.*").mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": 42})
    )
    dst = make_destination("wechat_message", base_url="https://wx.test")
    receipt = dst.send(
        message(to=["oABC"], data={"first": "谢谢光临", "keyword1": {"value": "SH-001", "color": "#173177"}, "_x": 1})
    )
    sent = json.loads(route.calls.last.request.content)
    assert sent["touser"] == "oABC" and sent["template_id"] == "TPL1" and sent["url"] == "https://hub.example/cases/1"
    assert sent["data"] == {"first": {"value": "谢谢光临"}, "keyword1": {"value": "SH-001", "color": "#173177"}}
    assert route.calls.last.request.url.params["access_token"] == "T"
    assert receipt.message_id == "42"


def test_alipay_answer_signature_is_verified_when_configured(
    alipay_fake: FakePlatform, make_destination: DestinationFactory, rsa_keys: tuple[str, str]
) -> None:
    dst = make_destination(
        "alipay_message", transport=httpx.MockTransport(alipay_fake.handler), alipay_public_key=rsa_keys[1]
    )
    with pytest.raises(RetriableError, match="signature"):
        dst.send(message(to=["2088102116773037"]))  # the fake does not sign its answers


def test_outage_answers_are_retriable(fake: FakePlatform, make_destination: DestinationFactory) -> None:
    dst = make_destination("wecom_robot", transport=httpx.MockTransport(fake.handler))
    fake.fail_next = 1
    with pytest.raises(RetriableError, match="HTTP 500"):
        dst.send(message())
    fake.timeout_next = 1
    with pytest.raises(RetriableError, match="timed out"):
        dst.send(message())
    dst.send(message())
    assert fake.keys() == {"rule:1:tp-1": 1}


def test_recipients_are_required_where_the_platform_needs_them(make_destination: DestinationFactory) -> None:
    for kind in ("dingtalk_work", "wecom_app", "feishu_app", "wechat_message", "alipay_message", "sms"):
        with pytest.raises(PermanentError, match=r"recipient|exactly one"):
            make_destination(kind).send(message(to=[]))


# ------------------------------------------------------------------ conformance


class TestDingTalkRobotConformance(ConnectorConformance):
    connector_kind = "dingtalk_robot"
    options: ClassVar[dict[str, Any]] = options_for("dingtalk_robot", "http://x")


class TestDingTalkWorkConformance(ConnectorConformance):
    connector_kind = "dingtalk_work"
    options: ClassVar[dict[str, Any]] = options_for("dingtalk_work", "http://x")


class TestWeComRobotConformance(ConnectorConformance):
    connector_kind = "wecom_robot"
    options: ClassVar[dict[str, Any]] = options_for("wecom_robot", "http://x")


class TestWeComAppConformance(ConnectorConformance):
    connector_kind = "wecom_app"
    options: ClassVar[dict[str, Any]] = options_for("wecom_app", "http://x")


class TestFeishuBotConformance(ConnectorConformance):
    connector_kind = "feishu_bot"
    options: ClassVar[dict[str, Any]] = options_for("feishu_bot", "http://x")


class TestFeishuAppConformance(ConnectorConformance):
    connector_kind = "feishu_app"
    options: ClassVar[dict[str, Any]] = options_for("feishu_app", "http://x")


class TestWeChatMessagesConformance(ConnectorConformance):
    connector_kind = "wechat_message"
    options: ClassVar[dict[str, Any]] = options_for("wechat_message", "http://x")


class TestAlipayConformance(ConnectorConformance):
    connector_kind = "alipay_message"
    options: ClassVar[dict[str, Any]] = options_for("alipay_message", "http://x", new_rsa_pair().private_pkcs1)


class TestSmsConformance(ConnectorConformance):
    connector_kind = "sms"
    options: ClassVar[dict[str, Any]] = options_for("sms", "http://x")


class TestEmailConformance(ConnectorConformance):
    connector_kind = "email"
    options: ClassVar[dict[str, Any]] = {"host": "127.0.0.1", "sender": "cx@example.com", "password": "pw-secret"}
