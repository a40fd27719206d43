"""Hypothesis fuzzing of every push endpoint with random bodies, query parameters and headers
(shaped like the real ones, so that parsing goes deep): never a 5xx, never a stored record
without a valid signature."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.push import Hub, make_hub, new_rsa_pair

from hub.sdk.testing import FakeClock

from .test_peers import NOW

SOURCES = ["oa", "oa_plain", "mp", "wecom", "ding", "feishu", "feishu_plain", "alipay", "alipay_gw"]
CONTENT_TYPES = [
    "text/xml",
    "application/xml",
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
]
QUERY_KEYS = ["signature", "msg_signature", "timestamp", "timeStamp", "nonce", "encrypt_type", "echostr", "openid"]

texts = st.text(max_size=60)
ts_values = st.one_of(st.just(str(NOW)), st.just(str(NOW * 1000)), st.integers(-(2**70), 2**70).map(str), texts)
sig_values = st.one_of(st.text(alphabet="0123456789abcdef", min_size=40, max_size=64), texts)
query = st.dictionaries(
    st.sampled_from(QUERY_KEYS),
    st.one_of(ts_values, sig_values, st.just("aes"), texts),
    max_size=6,
)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=10,
)
json_body = st.one_of(
    st.fixed_dictionaries({"encrypt": st.one_of(texts, st.binary(max_size=64).map(lambda b: b.hex()))}),
    st.fixed_dictionaries(
        {
            "type": st.just("url_verification"),
            "challenge": texts,
            "token": st.one_of(texts, st.just("feishu-plain-token")),
        }
    ),
    st.fixed_dictionaries(
        {
            "schema": st.just("2.0"),
            "header": st.dictionaries(st.sampled_from(["event_id", "token", "event_type"]), texts),
        }
    ),
    st.dictionaries(texts, json_value, max_size=4),
).map(lambda d: json.dumps(d).encode())
xml_body = st.builds(
    lambda tag, value: f"<xml><{tag}><![CDATA[{value}]]></{tag}></xml>".encode(),
    st.sampled_from(["Encrypt", "MsgType", "Content", "ToUserName"]),
    st.text(alphabet=st.characters(blacklist_characters="]<>&", blacklist_categories=("Cs",)), max_size=80),
)
form_body = st.dictionaries(
    st.sampled_from(
        ["sign", "sign_type", "app_id", "notify_id", "charset", "trade_status", "biz_content", "total_amount"]
    ),
    st.one_of(texts, st.sampled_from(["RSA2", "RSA", "gbk", "utf-8", "latin-1", "2021000000000001"])),
    max_size=8,
).map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8"))
bodies = st.one_of(st.binary(max_size=300), json_body, xml_body, form_body)
headers = st.fixed_dictionaries(
    {"Content-Type": st.sampled_from(CONTENT_TYPES)},
    optional={
        "X-Lark-Request-Timestamp": ts_values,
        "X-Lark-Request-Nonce": texts,
        "X-Lark-Signature": sig_values,
    },
).map(lambda h: {k: v.encode("latin-1", "replace").replace(b"\r", b" ").replace(b"\n", b" ") for k, v in h.items()})


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    with make_hub(url, new_rsa_pair(), FakeClock()) as hub:
        yield hub


@pytest.mark.parametrize("source", SOURCES)
def test_fuzz_never_5xx_never_stores_unsigned(fuzz_hub: Hub, source: str) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(method=st.sampled_from(["POST", "POST", "GET"]), q=query, body=bodies, h=headers)
    def run(method: str, q: dict[str, str], body: bytes, h: dict[str, str]) -> None:
        r = fuzz_hub.client.request(method, f"/hooks/{source}", params=q, content=body, headers=h)
        assert r.status_code < 500, (r.status_code, r.text)

    run()
    assert fuzz_hub.stored_anything() == 0
