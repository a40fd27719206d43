"""Callback buttons (``Button.value``) per destination: the cards that call back carry the value in
the platform's own form; the group robots, which have no callback, keep the link; the DingTalk
interactive card's errors are read as the v1.0 API answers them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from kit.destinations import DestinationFactory

from hub.errors import PermanentError
from hub.sdk.connector import Button, OutboundMessage

VALUE = {"cxhub_case": 12, "op": "ack", "t": "1794189600.sig", "key": "cxhub:12:ack:1794189600.sig"}


def card_message(to: list[str] | None = None) -> OutboundMessage:
    return OutboundMessage(
        key="case:12:r0:open:dst",
        title="【差评预警·高】徐汇店 ★☆☆☆☆ 1/5",
        body="**工单 #12** · 严重程度：高\n- **门店**：徐汇店（S001）\n- **评分**：★☆☆☆☆ 1/5",
        to=to or [],
        buttons=[
            Button("确认受理", "https://cx.example.com/cases/12/ack?t=x", VALUE),
            Button("查看详情", "https://cx.example.com/cases/12/view?t=y"),
        ],
        url="https://cx.example.com/cases/12/view?t=y",
    )


@pytest.mark.parametrize("kind", ["dingtalk_robot", "feishu_bot", "wecom_robot"])
def test_group_robots_without_callbacks_keep_the_link(make_destination: DestinationFactory, kind: str) -> None:
    body = json.dumps(make_destination(kind).render(card_message()), ensure_ascii=False)
    assert "https://cx.example.com/cases/12/ack?t=x" in body  # the link, where the page asks a name
    assert "cxhub_case" not in body and '1794189600.sig"' not in body


def test_dingtalk_robot_card_has_one_heading(make_destination: DestinationFactory) -> None:
    body = make_destination("dingtalk_robot").render(card_message())
    assert body["msgtype"] == "actionCard" and body["actionCard"]["text"].count("###") == 1


def test_feishu_app_button_with_a_value_is_a_callback(make_destination: DestinationFactory) -> None:
    from connectors.feishu_bot import card

    built = card(card_message(), 16000, callbacks=True)
    [action] = [e for e in built["elements"] if e["tag"] == "action"]
    ack, view = action["actions"]
    assert ack["value"] == VALUE and "url" not in ack
    assert view["url"].endswith("/view?t=y") and "value" not in view


def test_wecom_app_with_callback_buttons_sends_a_button_interaction_card(
    make_destination: DestinationFactory,
) -> None:
    msg = make_destination("wecom_app").render(card_message(["ZhangSan"]))
    card = msg["template_card"]
    assert msg["msgtype"] == "template_card" and card["card_type"] == "button_interaction"
    assert card["button_list"][0] == {"text": "确认受理", "style": 1, "type": 0, "key": VALUE["key"]}
    assert card["button_list"][1]["type"] == 1 and card["card_action"]["url"].endswith("/view?t=y")
    # links only: the text card as before
    plain = OutboundMessage(key="k", title="t", body="b", buttons=[Button("查看", "https://x/1")])
    assert make_destination("wecom_app").render(plain)["msgtype"] == "textcard"


def test_wecom_button_key_over_1024_bytes_is_refused(make_destination: DestinationFactory) -> None:
    big = OutboundMessage(key="k", title="t", body="b", buttons=[Button("确认", "https://x", {"key": "k" * 1100})])
    with pytest.raises(PermanentError, match="1024 bytes"):
        make_destination("wecom_app").render(big)


DING = {"card_template_id": "cxhub-case.schema", "api_url": "https://api.dingtalk.test"}


@respx.mock
def test_dingtalk_work_sends_an_interactive_card_per_recipient(make_destination: DestinationFactory) -> None:
    respx.get("http://fake/gettoken").mock(
        return_value=httpx.Response(200, json={"errcode": 0, "access_token": "tk", "expires_in": 7200})
    )
    route = respx.post("https://api.dingtalk.test/v1.0/card/instances/createAndDeliver").mock(
        return_value=httpx.Response(200, json={"success": True, "result": {}})
    )
    dst = make_destination("dingtalk_work", transport=None, **DING)
    receipt = dst.send(card_message(["zhangsan01", "cidGroup123=="]))
    assert route.call_count == 2 and "2 recipient" in receipt.detail
    bodies: list[dict[str, Any]] = [json.loads(c.request.content) for c in route.calls]
    assert bodies[0]["openSpaceId"] == "dtv1.card//IM_ROBOT.zhangsan01"
    assert bodies[1]["openSpaceId"] == "dtv1.card//IM_GROUP.cidGroup123=="
    assert bodies[1]["imGroupOpenDeliverModel"] == {"robotCode": "ding-app"}
    assert bodies[0]["outTrackId"] != bodies[1]["outTrackId"]
    assert bodies[0]["cardData"]["cardParamMap"]["ack_key"] == VALUE["key"]
    assert route.calls[0].request.headers["x-acs-dingtalk-access-token"] == "tk"
    # the same message again: the same outTrackId (DingTalk updates that card, no second one)
    dst.send(card_message(["zhangsan01"]))
    assert json.loads(route.calls[2].request.content)["outTrackId"] == bodies[0]["outTrackId"]


@respx.mock
def test_dingtalk_work_card_errors(make_destination: DestinationFactory) -> None:
    tokens = iter(["old", "new"])
    respx.get("http://fake/gettoken").mock(
        side_effect=lambda r: httpx.Response(200, json={"errcode": 0, "access_token": next(tokens), "expires_in": 7200})
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["x-acs-dingtalk-access-token"] == "old":
            return httpx.Response(401, json={"code": "InvalidAuthentication", "message": "token invalid"})
        return httpx.Response(400, json={"code": "param.cardTemplateId.invalid", "message": "no such template"})

    respx.post("https://api.dingtalk.test/v1.0/card/instances/createAndDeliver").mock(side_effect=answer)
    dst = make_destination("dingtalk_work", **DING)
    with pytest.raises(PermanentError, match=r"param\.cardTemplateId\.invalid") as info:
        dst.send(card_message(["zhangsan01"]))  # the refused token was refreshed once, then the real error
    assert "tk" not in str(info.value) and "dingtalk-app-secret" not in str(info.value)


@respx.mock
def test_dingtalk_work_without_a_template_keeps_the_action_card(make_destination: DestinationFactory) -> None:
    msg = make_destination("dingtalk_work").render(card_message(["u1"]))
    assert msg["msgtype"] == "action_card"
    assert msg["action_card"]["btn_json_list"][0]["action_url"].endswith("/ack?t=x")
