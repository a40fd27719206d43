"""Byte-safe trimming and splitting, Markdown flattening, digests, Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.sdk.connector import Button, OutboundMessage
from hub.sdk.policy import ErrorTable, RetryPolicy, parse_retry_after
from hub.sdk.render import (
    digest_key,
    flatten_markdown,
    mask_message,
    pack_digests,
    render_digest,
    split_utf8,
    trim_utf8,
    utf8_len,
)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 10, "abc"),
        ("牛奶过期了", 15, "牛奶过期了"),  # exactly 15 bytes: untouched
        ("牛奶过期了", 14, "牛奶过…"),  # 11 bytes of room before the 3-byte ellipsis: 3 characters fit
        ("牛奶过期了", 10, "牛奶…"),
        ("a牛b", 4, "a…"),
    ],
)
def test_trim_utf8(text: str, limit: int, expected: str) -> None:
    assert trim_utf8(text, limit) == expected
    assert utf8_len(trim_utf8(text, limit)) <= limit


@given(st.text(min_size=0, max_size=400), st.integers(min_value=4, max_value=200))
def test_split_utf8_loses_nothing_and_respects_the_limit(text: str, limit: int) -> None:
    parts = split_utf8(text, limit)
    assert "".join(parts) == text
    assert all(utf8_len(p) <= limit for p in parts)


@given(st.text(max_size=300), st.integers(min_value=1, max_value=100))
def test_trim_utf8_is_valid_and_bounded(text: str, limit: int) -> None:
    out = trim_utf8(text, limit)
    assert utf8_len(out) <= limit
    out.encode("utf-8")  # no broken character


def test_flatten_markdown() -> None:
    assert flatten_markdown("### 标题\n**门店** [确认](https://h/ack)") == "标题\n门店 确认 https://h/ack"


def test_digest_packs_within_the_limit_and_keeps_every_link() -> None:
    msgs = [
        OutboundMessage(key=f"k{i}", title=f"差评 {i}", body="评" * 300, buttons=[Button("确认", f"https://h/ack/{i}")])
        for i in range(20)
    ]
    groups = pack_digests(msgs, 4096)
    assert sorted(i for g in groups for i in g) == list(range(20)) and len(groups) > 1
    for g in groups:
        d = render_digest([msgs[i] for i in g], 4096)
        assert utf8_len(d.body) <= 4096
        assert all(f"https://h/ack/{i}" in d.body for i in g)
        assert d.key == digest_key([f"k{i}" for i in g])
    assert digest_key(["a", "b"]) == digest_key(["b", "a"])


def test_mask_message_leaves_recipients_alone() -> None:
    m = mask_message(OutboundMessage(key="k", title="13812345678", body="tel 13812345678", to=["13812345678"]))
    assert (m.title, m.body, m.to) == ("138****5678", "tel 138****5678", ["13812345678"])


def test_retry_after_and_error_table() -> None:
    now = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Mon, 02 Nov 2026 02:01:00 GMT", now) == 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    table = ErrorTable(token=frozenset({1}), throttle=frozenset({2}), permanent=frozenset({3}))
    assert [table.outcome(c) for c in (0, 1, 2, 3, 99)] == ["ok", "token", "throttle", "permanent", "retry"]
    assert RetryPolicy(initial=5, jitter=0).delay(3) == 20
    assert RetryPolicy(initial=5, jitter=0, max_delay=30).delay(10) == 30
