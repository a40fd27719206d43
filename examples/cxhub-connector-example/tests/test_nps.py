"""The NPS answers source: the SDK's conformance suites, then what is particular to this API."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from hub.sdk import ConnectorContext, PermanentError, RetriableError
from hub.sdk.testing import FakeClock, PullSourceConformance

from cxhub_connector_example.fake import FakeNpsApi, sample_answers
from cxhub_connector_example.nps import NpsAnswersSource, NpsOptions

API_KEY = "nps-key-7f3a9c"


class TestNpsConformance(PullSourceConformance):
    connector_kind = "example_nps"
    # two answers a page: five answers make three batches, so resuming mid-feed is checked too
    options: ClassVar[dict[str, Any]] = {"base_url": "https://api.nps.test", "api_key": API_KEY, "page_size": 2}
    min_records = 5

    def make_context(self) -> ConnectorContext:
        return ConnectorContext(clock=FakeClock(), transport=httpx.MockTransport(FakeNpsApi(API_KEY).handler))


def source(api: FakeNpsApi, **options: Any) -> NpsAnswersSource:
    opts = NpsOptions.model_validate({"base_url": "https://api.nps.test", "api_key": API_KEY, **options})
    return NpsAnswersSource(
        "nps", opts, ConnectorContext(clock=FakeClock(), transport=httpx.MockTransport(api.handler))
    )


def ids(batches: list[Any]) -> list[str]:
    return [r.external_id for b in batches for r in b.records]


def test_reads_new_answers_from_the_saved_cursor() -> None:
    api = FakeNpsApi(API_KEY)
    first = list(source(api, page_size=2).read(None))
    assert ids(first) == [f"ans_{i:04d}" for i in range(1, 6)]
    assert first[-1].state == {"cursor": "5"}
    api.add(*[dict(a, id=f"ans_new_{n}") for n, a in enumerate(sample_answers(2))])
    later = list(source(api, page_size=2).read(first[-1].state))
    assert ids(later) == ["ans_new_0", "ans_new_1"] and later[-1].state == {"cursor": "7"}


def test_an_empty_feed_yields_one_empty_batch_and_no_state() -> None:
    (batch,) = list(source(FakeNpsApi(API_KEY, answers=[])).read(None))
    assert batch.records == [] and batch.state == {"cursor": "0"}


def test_answers_without_an_id_are_rejected_with_a_reason() -> None:
    answers = [*sample_answers(2), {"score": 3, "comment": "no id"}]
    (batch,) = list(source(FakeNpsApi(API_KEY, answers=answers)).read(None))
    assert ids([batch]) == ["ans_0001", "ans_0002"]
    assert [r.reason for r in batch.rejected] == ["answer without an id"]


def test_the_api_key_travels_as_a_bearer_token_and_a_wrong_one_is_permanent() -> None:
    with pytest.raises(PermanentError, match="refused the api_key") as info:
        list(source(FakeNpsApi("another-key")).read(None))
    assert API_KEY not in str(info.value)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retriable(status: int) -> None:
    api = FakeNpsApi(API_KEY)
    api.fail = [status]
    with pytest.raises(RetriableError):
        list(source(api).read(None))


def test_a_connection_failure_is_retriable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    opts = NpsOptions(base_url="https://api.nps.test", api_key=API_KEY)
    src = NpsAnswersSource("nps", opts, ConnectorContext(transport=httpx.MockTransport(down)))
    with pytest.raises(RetriableError, match="cannot reach"):
        list(src.read(None))


def test_a_refused_cursor_says_how_to_start_over() -> None:
    with pytest.raises(PermanentError, match="--full"):
        list(source(FakeNpsApi(API_KEY)).read({"cursor": "999"}))


def test_survey_filter_and_page_size_are_sent() -> None:
    seen: list[httpx.URL] = []
    api = FakeNpsApi(API_KEY)

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return api.handler(request)

    opts = NpsOptions(base_url="https://api.nps.test/", api_key=API_KEY, survey_id="store-nps", page_size=50)
    list(NpsAnswersSource("nps", opts, ConnectorContext(transport=httpx.MockTransport(spy))).read(None))
    assert seen[0].path == "/v1/answers"
    assert dict(seen[0].params) == {"limit": "50", "survey_id": "store-nps"}


def test_options_take_durations_and_bound_the_page_size() -> None:
    assert NpsOptions.model_validate({"base_url": "x", "api_key": "k", "timeout": "30s"}).timeout == 30.0
    with pytest.raises(ValueError, match="less than or equal to 100"):
        NpsOptions.model_validate({"base_url": "x", "api_key": "k", "page_size": 500})
