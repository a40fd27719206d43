"""The Alipay template message carries what ``alipay.open.app.mini.templatemessage.send`` needs:
the form id (the trade number of the payment), a page path, the template's fields; checked with
the SDK's request model and signature verification."""

from __future__ import annotations

import json

import httpx
import pytest
from kit.destinations import DestinationFactory
from kit.fakes import FakePlatform

from hub.errors import PermanentError
from hub.sdk.connector import OutboundMessage

TRADE_NO = "2026110222001400001234567890"


def survey(data: dict[str, str], url: str | None = "pages/survey/index?token=T") -> OutboundMessage:
    return OutboundMessage(key="survey:r:1", title="邀请", body="x", to=["2088102116773037"], data=data, url=url)


def test_the_request_has_the_form_id_page_and_fields(
    fake: FakePlatform, make_destination: DestinationFactory, rsa_keys: tuple[str, str]
) -> None:
    from alipay.aop.api.domain.AlipayOpenAppMiniTemplatemessageSendModel import (
        AlipayOpenAppMiniTemplatemessageSendModel,
    )

    fake.alipay_public_key = rsa_keys[1]  # the fake verifies the RSA2 signature
    dst = make_destination("alipay_message", transport=httpx.MockTransport(fake.handler))
    dst.send(survey({"keyword1": "徐汇店", "_form_id": TRADE_NO}))
    [accepted] = [a for a in fake.accepted if a.api == "alipay"]
    model = AlipayOpenAppMiniTemplatemessageSendModel.from_alipay_dict(accepted.body)
    assert (model.to_user_id, model.form_id, model.page) == ("2088102116773037", TRADE_NO, "pages/survey/index?token=T")
    assert json.loads(model.data) == {"keyword1": {"value": "徐汇店"}}


def test_a_web_link_is_not_sent_as_the_page(
    fake: FakePlatform, make_destination: DestinationFactory, rsa_keys: tuple[str, str]
) -> None:
    fake.alipay_public_key = rsa_keys[1]
    dst = make_destination("alipay_message", transport=httpx.MockTransport(fake.handler), page="pages/survey/index")
    dst.send(survey({"keyword1": "x", "_form_id": TRADE_NO}, url="https://cx.example.com/s/T"))
    [accepted] = [a for a in fake.accepted if a.api == "alipay"]
    assert accepted.body["page"] == "pages/survey/index"


def test_no_form_id_is_refused_before_calling(fake: FakePlatform, make_destination: DestinationFactory) -> None:
    dst = make_destination("alipay_message", transport=httpx.MockTransport(fake.handler))
    with pytest.raises(PermanentError, match="no form id"):
        dst.send(survey({"keyword1": "x"}))
    assert fake.requests["alipay"] == 0
