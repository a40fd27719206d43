"""The declarative ``http_feed`` source with respx: pagination styles, windows, retries, vendor codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from connectors.http_feed import HttpFeedOptions, HttpFeedSource
from hub.errors import PermanentError, RetriableError
from hub.sdk.connector import ConnectorContext
from hub.sdk.signing import concat_sorted, top_sign
from hub.sdk.testing import ConnectorConformance, FakeClock

BASE = "https://api.example.test"


class TestHttpFeedConformance(ConnectorConformance):
    connector_kind = "http_feed"
    options = {"base_url": BASE, "records": "items", "id": "id", "auth": {"type": "bearer", "token": "tok-123"}}


def make(clock: FakeClock | None = None, **opts: Any) -> tuple[HttpFeedSource, list[float]]:
    options = HttpFeedOptions.model_validate(
        {"base_url": BASE, "path": "/reviews", "records": "items", "id": "id", **opts}
    )
    src = HttpFeedSource("feed", options, ConnectorContext(clock=clock or FakeClock()))
    waits: list[float] = []
    src.sleep = waits.append  # type: ignore[method-assign]
    return src, waits


def ids(src: HttpFeedSource, state: dict[str, Any] | None = None) -> list[str]:
    return [r.external_id for b in src.read(state) for r in b.records]


@respx.mock
def test_page_number_until_a_short_page() -> None:
    route = respx.get(f"{BASE}/reviews").mock(
        side_effect=lambda req: httpx.Response(
            200,
            json={
                "items": [
                    {"id": f"p{req.url.params['page']}-{i}"} for i in range(3 if req.url.params["page"] != "3" else 1)
                ]
            },
        )
    )
    src, _ = make(pagination={"type": "page", "size": 3})
    assert ids(src) == [f"p{p}-{i}" for p in (1, 2) for i in range(3)] + ["p3-0"]
    assert route.call_count == 3 and route.calls[0].request.url.params["page_size"] == "3"


@respx.mock
def test_offset_with_total() -> None:
    data = [{"id": str(i)} for i in range(7)]
    respx.get(f"{BASE}/reviews").mock(
        side_effect=lambda req: httpx.Response(
            200, json={"items": data[int(req.url.params["offset"]) :][:3], "total": 7}
        )
    )
    src, _ = make(pagination={"type": "offset", "size": 3, "total_path": "total", "size_param": "limit"})
    assert ids(src) == [str(i) for i in range(7)]


@respx.mock
def test_cursor_token() -> None:
    pages = {"": (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": ([], None)}
    respx.get(f"{BASE}/reviews").mock(
        side_effect=lambda req: httpx.Response(
            200,
            json={
                "items": [{"id": x} for x in pages[req.url.params.get("cursor", "")][0]],
                "next": pages[req.url.params.get("cursor", "")][1],
            },
        )
    )
    src, _ = make(pagination={"type": "cursor", "cursor_path": "next", "size": 2})
    assert ids(src) == ["a", "b", "c"]


@respx.mock
def test_next_link() -> None:
    respx.get(f"{BASE}/reviews").mock(
        return_value=httpx.Response(200, json={"items": [{"id": "1"}], "links": {"next": f"{BASE}/reviews/p2?x=1"}})
    )
    respx.get(f"{BASE}/reviews/p2").mock(return_value=httpx.Response(200, json={"items": [{"id": "2"}], "links": {}}))
    src, _ = make(pagination={"type": "next_link", "next_path": "links.next"}, auth={"type": "bearer", "token": "tok"})
    assert ids(src) == ["1", "2"]
    assert respx.calls[1].request.headers["authorization"] == "Bearer tok"


@respx.mock
def test_retries_honour_retry_after_and_back_off() -> None:
    route = respx.get(f"{BASE}/reviews").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503),
            httpx.ConnectTimeout("slow"),
            httpx.Response(200, text="<html>gateway</html>"),
            httpx.Response(200, json={"items": [{"id": "x"}]}),
        ]
    )
    src, waits = make(pagination={"type": "none"}, retries=5, backoff_base=1)
    assert ids(src) == ["x"]
    assert waits == [7.0, 2.0, 4.0, 8.0] and route.call_count == 5


@respx.mock
def test_gives_up_after_the_retries_with_a_retriable_error() -> None:
    respx.get(f"{BASE}/reviews").mock(return_value=httpx.Response(502))
    src, waits = make(pagination={"type": "none"}, retries=3)
    with pytest.raises(RetriableError, match="server error"):
        ids(src)
    assert len(waits) == 2


@respx.mock
def test_a_ban_longer_than_max_retry_after_ends_the_run() -> None:
    respx.get(f"{BASE}/reviews").mock(return_value=httpx.Response(429, headers={"Retry-After": "3600"}))
    src, waits = make(pagination={"type": "none"}, max_retry_after=60)
    with pytest.raises(RetriableError, match="blocked for 3600s"):
        ids(src)
    assert waits == []


ERRORS = {
    "code_path": "err.code",
    "sub_code_path": "err.sub",
    "message_path": "err.msg",
    "ok": ["0"],
    "token": ["27"],
    "throttle": ["7"],
    "retry": ["isp.*"],
}


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ({"err": {"code": 27, "msg": "Invalid session"}}, "token"),
        ({"err": {"code": 7, "msg": "This ban will last for 3 more seconds"}}, "throttle"),
        ({"err": {"code": 15, "sub": "isp.remote-timeout", "msg": "timeout"}}, "retry"),
        ({"err": {"code": 15, "sub": "isv.invalid-parameter", "msg": "bad"}}, "permanent"),
        ({"err": {"code": 0}, "items": [{"id": "ok"}]}, "ok"),
    ],
)
@respx.mock
def test_vendor_codes_in_http_200(body: dict[str, Any], outcome: str) -> None:
    respx.get(f"{BASE}/reviews").mock(
        side_effect=[httpx.Response(200, json=body), httpx.Response(200, json={"items": []})]
    )
    src, waits = make(pagination={"type": "none"}, errors=ERRORS, retries=2)
    if outcome == "ok":
        assert ids(src) == ["ok"]
    elif outcome == "token":
        with pytest.raises(PermanentError, match=r"authorisation failed \(code 27: Invalid session\)"):
            ids(src)
        assert waits == []
    elif outcome == "permanent":
        with pytest.raises(PermanentError, match=r"isv\.invalid-parameter"):
            ids(src)
    else:
        assert ids(src) == []  # retried once, then the empty page
        assert waits == ([3.0] if outcome == "throttle" else [1.0])


@respx.mock
def test_http_401_is_fatal() -> None:
    respx.get(f"{BASE}/reviews").mock(return_value=httpx.Response(401))
    src, waits = make(pagination={"type": "none"})
    with pytest.raises(PermanentError, match="credentials rejected"):
        ids(src)
    assert waits == []


def test_windows_overlap_lag_and_max_age() -> None:
    clock = FakeClock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    window = {"start_param": "from", "end_param": "to", "initial": "3d", "span": "1d", "overlap": "10m", "lag": "5m"}
    src, _ = make(clock, window=window)
    first = src.windows(None)
    assert len(first) == 3 and first[-1][1] == clock() - timedelta(minutes=5)
    assert first[0][0] == clock() - timedelta(minutes=5) - timedelta(days=3)
    again = src.windows({"until": first[-1][1].isoformat()})
    assert again == [(first[-1][1] - timedelta(minutes=10), first[-1][1])]  # the clock did not move: overlap only
    src2, _ = make(clock, window={**window, "initial": "400d", "max_age": "180d"})
    assert src2.windows(None)[0][0] == clock() - timedelta(days=180) + timedelta(minutes=1)


@respx.mock
def test_window_parameters_are_local_time_and_state_commits_the_window_end() -> None:
    clock = FakeClock(datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    route = respx.get(f"{BASE}/reviews").mock(return_value=httpx.Response(200, json={"items": []}))
    window = {"start_param": "from", "end_param": "to", "initial": "2h", "span": "1h", "lag": 0}
    src, _ = make(clock, window=window, pagination={"type": "none"})
    batches = list(src.read(None))
    assert [dict(r.request.url.params) for r in route.calls] == [
        {"from": "2026-11-02 18:00:00", "to": "2026-11-02 19:00:00"},
        {"from": "2026-11-02 19:00:00", "to": "2026-11-02 20:00:00"},
    ]
    assert batches[-1].state == {"until": "2026-11-02T12:00:00+00:00"}


@respx.mock
def test_rate_limit_spaces_requests() -> None:
    respx.get(f"{BASE}/reviews").mock(
        side_effect=lambda req: httpx.Response(200, json={"items": [{"id": req.url.params["page"]}]})
    )
    src, waits = make(pagination={"type": "page", "size": 1}, rate_limit={"limit": 2, "per_seconds": 1})
    now = [100.0]
    src.monotonic = lambda: now[0]  # type: ignore[method-assign]
    calls = {"n": 0}

    def fake_sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    src.sleep = fake_sleep  # type: ignore[method-assign]
    for _ in src.read(None):
        calls["n"] += 1
        if calls["n"] >= 4:
            break
    assert waits == [0.5, 0.5, 0.5]


@respx.mock
def test_records_without_an_id_are_rejected_not_dropped() -> None:
    respx.get(f"{BASE}/reviews").mock(return_value=httpx.Response(200, json={"items": [{"id": "1"}, {"x": 2}]}))
    src, _ = make(pagination={"type": "none"})
    (batch,) = list(src.read(None))
    assert [r.external_id for r in batch.records] == ["1"] and "no usable id" in batch.rejected[0].reason


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        HttpFeedOptions.model_validate({"base_url": BASE, "records": "a", "id": "b", "sign": "rsa"})
    with pytest.raises(ValueError, match="needs app_key and app_secret"):
        HttpFeedOptions.model_validate({"base_url": BASE, "records": "a", "id": "b", "sign": "top"})
    with pytest.raises(ValueError, match="cursor_path"):
        HttpFeedOptions.model_validate({"base_url": BASE, "records": "a", "id": "b", "pagination": {"type": "cursor"}})
    with pytest.raises(ValueError, match="records"):
        HttpFeedOptions.model_validate({"base_url": BASE, "records": "a[", "id": "b"})


def test_error_rules_accept_the_older_outcome_names() -> None:
    """``auth`` / ``throttled`` / ``transient`` were the feed's own names for token / throttle / retry."""
    rules = HttpFeedOptions.model_validate(
        {
            "base_url": BASE,
            "records": "a",
            "id": "b",
            "errors": {"auth": ["27"], "throttled": ["7"], "transient": ["1"]},
        }
    ).errors
    assert (rules.token, rules.throttle, rules.retry) == (["27"], ["7"], ["1"])
    table = rules.table()
    assert [table.outcome(c) for c in ("27", "7", "1", "99")] == ["token", "throttle", "retry", "permanent"]


def test_top_signature_known_values() -> None:
    """The TOP rule on a fixed example: sorted k+v, md5 wraps with the secret, hmac variants key with it."""
    import hashlib
    import hmac

    params = {"method": "taobao.traderates.get", "app_key": "12345678", "v": "2.0", "sign": "x", "empty": ""}
    s = "app_key12345678methodtaobao.traderates.getv2.0"
    assert concat_sorted(params) == s
    assert top_sign(params, "helloworld", "md5") == hashlib.md5(f"helloworld{s}helloworld".encode()).hexdigest().upper()
    assert top_sign(params, "k", "hmac") == hmac.new(b"k", s.encode(), hashlib.md5).hexdigest().upper()
    assert top_sign(params, "k", "hmac-sha256") == hmac.new(b"k", s.encode(), hashlib.sha256).hexdigest().upper()
