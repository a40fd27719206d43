"""Pushes built by the platforms' own SDKs, delivered as the platforms deliver them (retries
included): one touchpoint per event, the exact reply each platform expects."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
from kit.peers import (
    alipay_notify,
    dingtalk_push,
    feishu_encrypt,
    feishu_push,
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
    FEISHU_PLAIN_TOKEN,
    FEISHU_TOKEN,
    MP_AES_KEY,
    MP_APPID,
    MP_TOKEN,
    OA_AES_KEY,
    OA_APPID,
    OA_TOKEN,
    PLAIN_TOKEN,
    WECOM_AES_KEY,
    WECOM_CORP_ID,
    WECOM_TOKEN,
    Hub,
    RsaPair,
)
from wechatpy.crypto import PrpCrypto, _get_signature

from hub.ingest import IngestContext
from hub.model import TouchpointEvent

NOW = 1793584800  # FakeClock's default start, 2026-11-02 02:00 UTC
XML = {"Content-Type": "text/xml"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def text_message(msg_id: str = "7000000000000000001", content: str = "牛奶过期了，要退货") -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oCustomer1]]></FromUserName>"
        f"<CreateTime>{NOW - 1}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


def trade_params(notify_id: str = "ac05099524730693a8b330c5ecf72da9786") -> dict[str, str]:
    return {
        "notify_time": "2026-11-02 10:00:09",
        "notify_type": "trade_status_sync",
        "notify_id": notify_id,
        "app_id": ALIPAY_APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2026110222001400000000000001",
        "out_trade_no": "R-1001",
        "buyer_id": "2088102122524333",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "86.40",
        "receipt_amount": "86.40",
        "gmt_payment": "2026-11-02 10:00:05",
        "subject": "超市购物 生鲜",
        "store_id": "S001",
    }


def test_wechat_push_delivered_three_times_is_one_touchpoint(hub: Hub) -> None:
    """WeChat retries a push up to 3 times (new nonce and timestamp each time, same MsgId)."""
    for attempt in range(3):
        q, body = wechat_safe(
            text_message(),
            token=OA_TOKEN,
            aes_key=OA_AES_KEY,
            appid=OA_APPID,
            ts=NOW + attempt * 5,
            nonce=f"n{attempt}",
        )
        hub.clock.set(hub.clock.now)  # the clock does not move: retries come within seconds
        r = hub.client.post("/hooks/oa", params=q, content=body, headers=XML)
        assert (r.status_code, r.text) == (200, "success")
    assert hub.count(source="oa") == 1
    (event,) = hub.events("oa")
    assert event["feedback"]["text"] == "牛奶过期了，要退货"


def test_same_request_replayed_is_deduplicated_not_doubled(sqlite_hub: Hub) -> None:
    q, body = wechat_safe(text_message(), token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, ts=NOW, nonce="same")
    for _ in range(3):
        assert sqlite_hub.client.post("/hooks/oa", params=q, content=body, headers=XML).status_code == 200
    assert sqlite_hub.count(source="oa") == 1


def test_alipay_notify_delivered_eight_times_is_one_touchpoint(hub: Hub, alipay_keys: RsaPair) -> None:
    body = alipay_notify(trade_params(), alipay_keys.private_pkcs1)
    for _ in range(8):
        r = hub.client.post("/hooks/alipay", content=body, headers=FORM)
        assert (r.status_code, r.content) == (200, b"success")
    assert hub.count(source="alipay") == 1
    (event,) = hub.events("alipay")
    assert event["kind"] == "transaction"
    assert event["order"] == {"id": "R-1001", "amount": "86.40", "currency": "CNY", "items": []}
    assert event["org"]["store"] == "S001"
    assert event["customer"]["identities"][0] == {"namespace": "alipay_uid", "value": "2088102122524333", "scope": None}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"app_id": "2021999999999999"}, 403),  # signed by Alipay, but for another app
        ({"sign_type": "RSA"}, 401),  # SHA1withRSA is not accepted
    ],
)
def test_alipay_notify_for_another_app_or_weak_sign_is_refused(
    sqlite_hub: Hub, alipay_keys: RsaPair, change: dict[str, str], status: int
) -> None:
    params = {**trade_params(), **{k: v for k, v in change.items() if k != "sign_type"}}
    body = alipay_notify(params, alipay_keys.private_pkcs1, sign_type=change.get("sign_type", "RSA2"))
    r = sqlite_hub.client.post("/hooks/alipay", content=body, headers=FORM)
    assert r.status_code == status
    assert sqlite_hub.stored_anything() == 0


def test_alipay_unpaid_status_is_kept_but_not_a_touchpoint(sqlite_hub: Hub, alipay_keys: RsaPair) -> None:
    body = alipay_notify({**trade_params("n-wait"), "trade_status": "WAIT_BUYER_PAY"}, alipay_keys.private_pkcs1)
    assert sqlite_hub.client.post("/hooks/alipay", content=body, headers=FORM).text == "success"
    from hub.store.schema import inbox

    assert sqlite_hub.count(source="alipay") == 0
    assert sqlite_hub.count(inbox, status="filtered") == 1


def test_alipay_gateway_message_parses_biz_content(sqlite_hub: Hub, alipay_keys: RsaPair) -> None:
    params = {
        "msg_method": "alipay.merchant.order.sync",
        "app_id": ALIPAY_APP_ID,
        "version": "1.1",
        "utc_timestamp": str(NOW * 1000),
        "notify_id": "gw-1",
        "charset": "UTF-8",
        "biz_content": json.dumps({"order_id": "R-1", "status": "PAID"}),
    }
    r = sqlite_hub.client.post(
        "/hooks/alipay_gw", content=alipay_notify(params, alipay_keys.private_pkcs1), headers=FORM
    )
    assert r.text == "success"
    (event,) = sqlite_hub.events("alipay_gw")
    assert event["attributes"]["biz"] == {"order_id": "R-1", "status": "PAID"}


def test_wechat_plain_mode(sqlite_hub: Hub) -> None:
    q, body = wechat_plain(text_message("9001"), token=PLAIN_TOKEN, ts=NOW, nonce="p1")
    assert sqlite_hub.client.post("/hooks/oa_plain", params=q, content=body, headers=XML).text == "success"
    assert sqlite_hub.count(source="oa_plain") == 1


def test_plain_push_to_a_safe_mode_account_is_refused(sqlite_hub: Hub) -> None:
    """Plain mode's signature does not cover the body: once safe mode is configured it is refused."""
    q, body = wechat_plain(text_message("9002"), token=OA_TOKEN, ts=NOW, nonce="p2")
    r = sqlite_hub.client.post("/hooks/oa", params=q, content=body, headers=XML)
    assert r.status_code == 401
    assert sqlite_hub.stored_anything() == 0


def test_plain_mode_nonce_reused_with_another_body_is_refused(sqlite_hub: Hub) -> None:
    q, body = wechat_plain(text_message("9003"), token=PLAIN_TOKEN, ts=NOW, nonce="p3")
    assert sqlite_hub.client.post("/hooks/oa_plain", params=q, content=body, headers=XML).status_code == 200
    forged = text_message("9004", content="forged")
    r = sqlite_hub.client.post("/hooks/oa_plain", params=q, content=forged.encode(), headers=XML)
    assert r.status_code == 401 and "nonce" in r.text
    assert sqlite_hub.count(source="oa_plain") == 1


def test_wechat_url_verification(sqlite_hub: Hub) -> None:
    q, _ = wechat_plain("", token=OA_TOKEN, ts=NOW, nonce="v1")
    r = sqlite_hub.client.get("/hooks/oa", params={**q, "echostr": "8046147283498583011"})
    assert (r.status_code, r.text) == (200, "8046147283498583011")
    r = sqlite_hub.client.get("/hooks/oa", params={**q, "signature": "0" * 40, "echostr": "x"})
    assert r.status_code == 401


def test_mini_program_json_safe_mode_subscribe_event(sqlite_hub: Hub) -> None:
    event = {
        "ToUserName": "gh_mp",
        "FromUserName": "oMp1",
        "CreateTime": NOW - 2,
        "MsgType": "event",
        "Event": "subscribe_msg_popup_event",
        "List": [{"TemplateId": "T1", "SubscribeStatusString": "accept", "PopupScene": "0"}],
    }
    q, body = wechat_json_safe(event, token=MP_TOKEN, aes_key=MP_AES_KEY, appid=MP_APPID, ts=NOW, nonce="m1")
    r = sqlite_hub.client.post("/hooks/mp", params=q, content=body, headers={"Content-Type": "application/json"})
    assert r.text == "success"
    (stored,) = sqlite_hub.events("mp")
    assert stored["attributes"]["subscribe"][0]["SubscribeStatusString"] == "accept"


def test_mini_program_sealed_for_another_app_is_forbidden(sqlite_hub: Hub) -> None:
    q, body = wechat_json_safe(
        {"MsgType": "text"}, token=MP_TOKEN, aes_key=MP_AES_KEY, appid="wxsomeoneelse", ts=NOW, nonce="m2"
    )
    r = sqlite_hub.client.post("/hooks/mp", params=q, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 403
    assert sqlite_hub.stored_anything() == 0


def test_wecom_external_contact_event(sqlite_hub: Hub) -> None:
    xml = (
        f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{NOW}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_contact]]>"
        "</Event><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>"
        "<ExternalUserID><![CDATA[wmEx1]]></ExternalUserID><State><![CDATA[store-S001]]></State></xml>"
    )
    q, body = wecom_push(xml, token=WECOM_TOKEN, aes_key=WECOM_AES_KEY, corp_id=WECOM_CORP_ID, ts=NOW, nonce="w1")
    r = sqlite_hub.client.post("/hooks/wecom", params=q, content=body, headers=XML)
    assert (r.status_code, r.content) == (200, b"")
    (event,) = sqlite_hub.events("wecom")
    assert event["kind"] == "follow"
    assert event["customer"]["identities"][0]["value"] == "wmEx1"


class Recorder:
    """An ingest hook like the feedback feature's: it sees card actions inside the commit."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[TouchpointEvent] = []

    def __call__(self, ctx: IngestContext, events: Sequence[TouchpointEvent]) -> None:
        self.seen.extend(e for e in events if e.kind == "card_action")


def test_dingtalk_approval_becomes_a_card_action_and_gets_encrypted_success(sqlite_hub: Hub) -> None:
    rec = Recorder()
    sqlite_hub.rt.ingestor.hooks.append(rec)
    event = {
        "EventType": "bpms_task_change",
        "processInstanceId": "pi-42",
        "corpId": "ding1",
        "createTime": NOW * 1000,
        "finishTime": NOW * 1000,
        "title": "客诉退款",
        "type": "finish",
        "result": "agree",
        "staffId": "mgr01",
        "taskId": 7,
    }
    for attempt in range(2):
        q, body = dingtalk_push(
            event, token=DING_TOKEN, aes_key=DING_AES_KEY, app_key=DING_APP_KEY, ts_ms=NOW * 1000, nonce=f"d{attempt}"
        )
        r = sqlite_hub.client.post("/hooks/ding", params=q, content=body, headers={"Content-Type": "application/json"})
        reply = r.json()
        key = base64.b64decode(DING_AES_KEY + "=")
        assert PrpCrypto(key).decrypt(reply["encrypt"], DING_APP_KEY) == "success"
        assert reply["msg_signature"] == _get_signature(
            DING_TOKEN, reply["timeStamp"], reply["nonce"], reply["encrypt"]
        )
    assert sqlite_hub.count(source="ding") == 1
    (seen,) = rec.seen
    assert seen.attributes["action"] == {"type": "finish", "result": "agree", "remark": None}
    assert seen.attributes["operator"] == "mgr01"
    assert seen.attributes["card_token"] == "pi-42"


def card_action(event_id: str = "f7984f25108f8137722bb63cee927e66", token: str = FEISHU_TOKEN) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "token": token,
            "create_time": str(NOW * 1000),
            "event_type": "card.action.trigger",
            "tenant_key": "t1",
            "app_id": "cli_a5",
        },
        "event": {
            "operator": {"tenant_key": "t1", "user_id": "u_mgr", "open_id": "ou_mgr", "union_id": "on_1"},
            "token": "c-295ee57216a5dc9de90fefd0aadb4b1d7d5c6f2f",
            "action": {"value": {"case": "42", "action": "ack"}, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": "om_x1", "open_chat_id": "oc_x1"},
        },
    }


def test_feishu_card_action_is_a_card_action_for_feature_hooks(sqlite_hub: Hub) -> None:
    rec = Recorder()
    sqlite_hub.rt.ingestor.hooks.append(rec)
    headers, body = feishu_push(card_action(), encrypt_key=FEISHU_ENCRYPT_KEY, ts=NOW, nonce="f1")
    r = sqlite_hub.client.post("/hooks/feishu", content=body, headers=headers)
    assert (r.status_code, r.json()) == (200, {"toast": {"type": "info", "content": "已收到"}})
    (seen,) = rec.seen
    assert seen.attributes["action"] == {"case": "42", "action": "ack"}
    assert seen.attributes["operator"] == "ou_mgr"
    assert seen.attributes["card_token"] == "c-295ee57216a5dc9de90fefd0aadb4b1d7d5c6f2f"


def test_feishu_unknown_event_type_is_answered_200_and_kept(sqlite_hub: Hub) -> None:
    event = card_action("e-unknown")
    event["header"]["event_type"] = "some.future.event_v9"
    headers, body = feishu_push(event, encrypt_key=FEISHU_ENCRYPT_KEY, ts=NOW, nonce="f2")
    r = sqlite_hub.client.post("/hooks/feishu", content=body, headers=headers)
    assert (r.status_code, r.json()) == (200, {})
    assert sqlite_hub.events("feishu")[0]["kind"] == "other"


@pytest.mark.parametrize("encrypted", [True, False])
def test_feishu_url_verification(sqlite_hub: Hub, encrypted: bool) -> None:
    if encrypted:
        challenge = {"challenge": "ajls384kdjx98XX", "token": FEISHU_TOKEN, "type": "url_verification"}
        body = json.dumps({"encrypt": feishu_encrypt(json.dumps(challenge), FEISHU_ENCRYPT_KEY)})
        source = "feishu"
    else:
        body = json.dumps({"challenge": "ajls384kdjx98XX", "token": FEISHU_PLAIN_TOKEN, "type": "url_verification"})
        source = "feishu_plain"
    r = sqlite_hub.client.post(f"/hooks/{source}", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (200, {"challenge": "ajls384kdjx98XX"})
    wrong = json.loads(body) if not encrypted else None
    if wrong is not None:
        wrong["token"] = "not-the-token"
        r = sqlite_hub.client.post(f"/hooks/{source}", json=wrong)
        assert r.status_code == 403
    assert sqlite_hub.stored_anything() == 0


def test_feishu_verdicts_agree_with_lark_oapi_dispatcher(sqlite_hub: Hub) -> None:
    """lark-oapi's EventDispatcherHandler (with a handler registered) accepts what we accept and
    refuses a tampered signature, as we do."""
    import lark_oapi as lark
    from lark_oapi.core.model import RawRequest
    from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

    handler = (
        lark.EventDispatcherHandler.builder(FEISHU_ENCRYPT_KEY, FEISHU_TOKEN)
        .register_p2_card_action_trigger(lambda data: P2CardActionTriggerResponse({}))
        .build()
    )

    def lark_status(headers: dict[str, str], body: bytes) -> int:
        req = RawRequest()
        req.uri = "/hooks/feishu"
        req.body = body
        req.headers = headers
        return int(handler.do(req).status_code)

    headers, body = feishu_push(card_action("e-cross"), encrypt_key=FEISHU_ENCRYPT_KEY, ts=NOW, nonce="x1")
    assert lark_status(headers, body) == 200
    assert sqlite_hub.client.post("/hooks/feishu", content=body, headers=headers).status_code == 200
    tampered = {**headers, "X-Lark-Signature": "0" * 64}
    assert lark_status(tampered, body) != 200
    assert sqlite_hub.client.post("/hooks/feishu", content=body, headers=tampered).status_code == 401
