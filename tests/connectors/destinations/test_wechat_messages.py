"""The WeChat message destination builds each API's documented request (wechatpy builds it; the
fake WeChat of the demo checks the documented fields): a mini-program message opens a page path."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from kit.destinations import DestinationFactory

from commands.demo.fake_wechat import FakeWeChat, problem
from hub.sdk.connector import OutboundMessage

LINK = "https://cx.example.com/s/TOKEN"


def survey(url: str | None) -> OutboundMessage:
    return OutboundMessage(
        key="survey:r:1", title="邀请", body="诚邀您参与问卷", to=["oMP1"], data={"thing1": "徐汇店"}, url=url
    )


@respx.mock
@pytest.mark.parametrize(
    ("url", "option", "expected"),
    [
        ("pages/survey/index?token=T", None, "pages/survey/index?token=T"),
        (LINK, "pages/survey/index", "pages/survey/index"),  # a web link is never the page
        (LINK, None, None),
    ],
)
def test_mp_subscribe_sends_a_page_path_never_a_web_link(
    make_destination: DestinationFactory, url: str, option: str | None, expected: str | None
) -> None:
    respx.post(url__regex=r".*stable_token.*").mock(
        return_value=httpx.Response(200, json={"access_token": "T", "expires_in": 7200})
    )
    route = respx.post(url__regex=r".*/cgi-bin/message/subscribe/send.*").mock(
        return_value=httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})
    )
    dst = make_destination("wechat_message", base_url="https://wx.test", api="mp_subscribe", miniprogram_page=option)
    dst.send(survey(url))
    sent = json.loads(route.calls.last.request.content)
    assert problem("/cgi-bin/message/subscribe/send", sent) is None
    assert sent.get("page") == expected
    assert sent["data"] == {"thing1": {"value": "徐汇店"}}


@pytest.mark.parametrize("api", ["oa_template", "oa_subscribe", "mp_subscribe"])
def test_each_api_against_the_fake_wechat_over_http(make_destination: DestinationFactory, api: str) -> None:
    from kit.fakes import APP_SECRET

    with FakeWeChat({"wx-test": APP_SECRET}) as wx:
        dst = make_destination("wechat_message", base_url=wx.base_url, api=api)
        url = "pages/survey/index?token=T" if api == "mp_subscribe" else LINK
        receipt = dst.send(survey(url))
    assert wx.rejected == [] and [m.api for m in wx.received] == [api]
    assert receipt.message_id == "1" and wx.tokens_issued == 1


def test_the_fake_refuses_what_wechat_refuses() -> None:
    assert problem("/cgi-bin/message/subscribe/send", {"touser": "o", "template_id": "t", "data": {}})
    body = {"touser": "o", "template_id": "t", "data": {"k": {"value": "v"}}, "page": LINK}
    assert problem("/cgi-bin/message/subscribe/send", body) == (
        40165,
        f"page {LINK!r} is not a page path of the mini-program",
    )
    body = {"touser": "o", "template_id": "t", "data": {"k": {"value": "v"}}, "token": "x"}
    assert problem("/cgi-bin/message/template/send", body) == (47001, "missing [], unknown ['token']")
    body = {"touser": "o", "template_id": "t", "data": {"token": "x"}}
    assert problem("/cgi-bin/message/template/send", body) == (47001, "data.token must be {'value': text}")


def test_the_fake_bounds_subscribe_fields_like_wechat() -> None:
    body = {"touser": "o", "template_id": "t", "data": {"thing1": {"value": "一" * 21}}}
    assert problem("/cgi-bin/message/subscribe/send", body) == (
        47003,
        "argument invalid! data.thing1.value is over 20 characters",
    )
    body["data"] = {"thing1": {"value": "一" * 20}}
    assert problem("/cgi-bin/message/subscribe/send", body) is None
