"""One vocabulary for result codes: ErrorTable outcomes, prefixes and sub-codes; Retry-After."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from hub.errors import PermanentError, RetriableError, Throttled, TokenExpired
from hub.sdk import policy
from hub.sdk.policy import OUTCOMES, ErrorTable, parse_retry_after


def test_the_error_tree_and_the_policy_share_the_classes() -> None:
    assert policy.Throttled is Throttled and policy.TokenExpired is TokenExpired
    assert OUTCOMES == ("ok", "token", "throttle", "retry", "permanent")


def test_prefixes_and_sub_codes() -> None:
    table = ErrorTable(
        ok=frozenset({"0"}),
        token=frozenset({"27", "isv.session-expired*"}),
        throttle=frozenset({"7"}),
        retry=frozenset({"isp.*"}),
        default="permanent",
    )
    assert table.outcome("isp.remote-timeout") == "retry"
    assert table.outcome("15", "isp.remote-timeout") == "retry"
    assert table.outcome("15", "isv.session-expired-3") == "token"
    assert table.outcome("15", "isv.invalid-parameter") == "permanent"
    assert table.listed("15", "isv.invalid-parameter") is None
    assert table.outcome("15", "0") == "permanent"  # success is the main code's to say
    assert table.outcome("0", "isp.x") == "ok"


@pytest.mark.parametrize(
    ("code", "error"),
    [(1, TokenExpired), (2, Throttled), (3, PermanentError), (99, RetriableError)],
)
def test_check_raises_the_class_of_the_outcome(code: int, error: type[Exception]) -> None:
    table = ErrorTable(token=frozenset({1}), throttle=frozenset({2}), permanent=frozenset({3}), reasons={3: "bad id"})
    table.check(0, "ok", target="d")
    with pytest.raises(error) as exc:
        table.check(code, "msg", target="d")
    assert type(exc.value) is error
    if code == 3:
        assert "bad id: msg" in str(exc.value)
    if code == 2:
        assert isinstance(exc.value, Throttled) and exc.value.retry_after == table.throttle_seconds


def test_retry_after() -> None:
    now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12", now) == 12 and parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Mon, 02 Nov 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("Mon, 02 Nov 2026 12:00:30 -0000", now) == 30  # zoneless: GMT
    assert parse_retry_after("Mon, 02 Nov 2026 12:00:30 GMT") is None  # a date needs the caller's clock
    assert parse_retry_after("Mon, 02 Nov 2026 11:00:00 GMT", now) == 0.0
    for bad in ("soon", "nan", "inf", "", None):
        assert parse_retry_after(bad, now) is None
    assert not math.isnan(parse_retry_after("0") or 0.0)
