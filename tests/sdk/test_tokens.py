"""The shared access-token helpers: one cache per platform token, refresh-and-retry-once, token answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.errors import PermanentError, RetriableError, TokenExpired
from hub.sdk.connector import MemoryKeyValueStore
from hub.sdk.policy import ErrorTable
from hub.sdk.testing import FakeClock
from hub.sdk.tokens import TokenCache, token_answer


def _cache(clock: FakeClock) -> tuple[TokenCache, list[bool]]:
    fetched: list[bool] = []

    def fetch(force: bool) -> tuple[str, float]:
        fetched.append(force)
        return f"t{len(fetched)}", 7200.0

    return TokenCache(MemoryKeyValueStore(clock), "demo:app", fetch, clock=clock), fetched


def test_call_reuses_the_cached_token() -> None:
    clock = FakeClock(datetime(2026, 11, 2, tzinfo=UTC))
    cache, fetched = _cache(clock)
    assert [cache.call(lambda t: t) for _ in range(3)] == ["t1", "t1", "t1"]
    assert fetched == [False]
    assert cache.kv.get("token:demo:app") is not None  # kept in the shared store under token:<name>


def test_a_refused_token_is_refreshed_and_the_call_retried_once() -> None:
    clock = FakeClock(datetime(2026, 11, 2, tzinfo=UTC))
    cache, fetched = _cache(clock)
    seen: list[str] = []

    def send(token: str) -> str:
        seen.append(token)
        if token == "t1":
            raise TokenExpired("access token expired", code=42001)
        return "sent"

    assert cache.call(send) == "sent"
    assert seen == ["t1", "t2"] and fetched == [False, True]


def test_a_second_refusal_propagates() -> None:
    clock = FakeClock(datetime(2026, 11, 2, tzinfo=UTC))
    cache, fetched = _cache(clock)
    calls: list[str] = []

    def send(token: str) -> str:
        calls.append(token)
        raise TokenExpired("still refused", code=40014)

    with pytest.raises(TokenExpired):
        cache.call(send)
    assert calls == ["t1", "t2"] and fetched == [False, True]


def test_a_token_near_expiry_is_refreshed_before_use() -> None:
    clock = FakeClock(datetime(2026, 11, 2, tzinfo=UTC))
    cache, fetched = _cache(clock)
    assert cache.call(lambda t: t) == "t1"
    clock.advance(seconds=7200 - 299)  # inside the 300 s refresh margin
    assert cache.call(lambda t: t) == "t2"
    assert fetched == [False, False]


TOKEN_ERRORS = ErrorTable(permanent=frozenset({40013}))


def test_token_answer_reads_the_token_and_its_lifetime() -> None:
    assert token_answer({"errcode": 0, "access_token": "abc", "expires_in": 7000}, TOKEN_ERRORS, target="d") == (
        "abc",
        7000.0,
    )
    feishu = {"code": 0, "tenant_access_token": "t", "expire": 3600}
    assert token_answer(
        feishu,
        TOKEN_ERRORS,
        target="d",
        code_field="code",
        token_field="tenant_access_token",
        expires_field="expire",
    ) == ("t", 3600.0)
    assert token_answer({"access_token": "x"}, TOKEN_ERRORS, target="d") == ("x", 7200.0)


def test_token_answer_errors_are_classified_by_the_table() -> None:
    with pytest.raises(PermanentError, match="cannot get an access token: invalid appsecret") as exc:
        token_answer({"errcode": 40013, "errmsg": "invalid appsecret"}, TOKEN_ERRORS, target="d")
    assert exc.value.code == 40013
    with pytest.raises(RetriableError, match="system busy") as busy:
        token_answer({"errcode": -1, "errmsg": "system busy"}, TOKEN_ERRORS, target="d")
    assert not isinstance(busy.value, PermanentError)
    with pytest.raises(RetriableError):  # success code but no token
        token_answer({"errcode": 0}, TOKEN_ERRORS, target="d")
    with pytest.raises(RetriableError):  # no code at all where the platform always sends one
        token_answer({"access_token": "x"}, TOKEN_ERRORS, target="d", missing_code=-1)
