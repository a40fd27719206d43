"""The follow-up destination: the SDK's conformance suite, then the vendor's own answers."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from hub.sdk import ConnectorContext, OutboundMessage, PermanentError, Throttled
from hub.sdk.testing import DestinationConformance

from cxhub_connector_example.fake import FakeNpsApi
from cxhub_connector_example.followup import FollowUpOptions, NpsFollowUpDestination

API_KEY = "nps-key-7f3a9c"
MESSAGE = OutboundMessage(
    key="case-42:followup",
    title="差评回访",
    body="**已联系顾客** 138 1234 5678，补偿优惠券一张。",
    to=["manager-s001"],
    data={"answer_id": "ans_0001"},
    url="https://cx.example.com/cases/42",
)


class TestFollowUpConformance(DestinationConformance):
    connector_kind = "example_nps_followup"
    options: ClassVar[dict[str, Any]] = {"base_url": "https://api.nps.test", "api_key": API_KEY}
    message = MESSAGE

    def accept(self, request: httpx.Request) -> httpx.Response:
        return FakeNpsApi(API_KEY).handler(request)


def destination(api: FakeNpsApi, **options: Any) -> NpsFollowUpDestination:
    opts = FollowUpOptions.model_validate({"base_url": "https://api.nps.test", "api_key": API_KEY, **options})
    return NpsFollowUpDestination("vendor", opts, ConnectorContext(transport=httpx.MockTransport(api.handler)))


def test_posts_a_note_once_per_idempotency_key() -> None:
    api = FakeNpsApi(API_KEY)
    dest = destination(api)
    first = dest.send(MESSAGE)
    again = dest.send(MESSAGE)  # a retry after a lost answer
    assert first.message_id == again.message_id == "fu_1"
    (posted,) = api.followups.values()
    assert posted["answer_id"] == "ans_0001" and posted["assignee"] == "manager-s001"
    assert posted["note"].startswith("已联系顾客") and "**" not in posted["note"]
    assert posted["link"] == "https://cx.example.com/cases/42"


def test_vendor_error_codes_are_classified() -> None:
    api = FakeNpsApi(API_KEY)
    with pytest.raises(PermanentError, match="no such answer"):
        destination(api).send(OutboundMessage(key="k1", title="t", body="b", data={"answer_id": "ans_9999"}))

    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": False, "error": {"code": "rate_limited"}})

    dest = NpsFollowUpDestination(
        "vendor",
        FollowUpOptions(base_url="https://api.nps.test", api_key=API_KEY),
        ConnectorContext(transport=httpx.MockTransport(throttled)),
    )
    with pytest.raises(Throttled) as info:
        dest.send(MESSAGE)
    assert info.value.retry_after == 30.0


def test_a_message_without_an_answer_or_with_two_assignees_is_permanent() -> None:
    dest = destination(FakeNpsApi(API_KEY))
    with pytest.raises(PermanentError, match="answer_id"):
        dest.send(OutboundMessage(key="k", title="t", body="b"))
    with pytest.raises(PermanentError, match="one assignee"):
        dest.send(OutboundMessage(key="k", title="t", body="b", to=["a", "b"], data={"answer_id": "ans_0001"}))


def test_declares_its_rate_limit_and_note_size() -> None:
    assert NpsFollowUpDestination.rate_limits[0].limit == 10
    assert NpsFollowUpDestination.max_body_bytes == 4000
