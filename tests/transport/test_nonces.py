"""Replay protection across processes: a (timestamp, nonce) seen by one receiver with one body is
refused by another receiver with another body, whether the memory is the store's table (direct
transport on PostgreSQL) or the NATS key-value bucket (nats transport). Each receiver here is its
own runtime (engine, connectors, app) on one store, as two ``cxhub run`` processes are."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.databases import temporary_postgres_database
from kit.peers import wechat_plain
from kit.push import PLAIN_TOKEN
from kit.runtime import build_runtime
from sqlalchemy import func, select

from hub.runtime import Runtime
from hub.sdk.callbacks import NonceCache
from hub.store.schema import push_nonces
from hub.transport.nonces import StoreNonces
from hub.web import create_app

pytestmark = pytest.mark.postgres


def config(store_url: str, transport: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "secret_key": "test-secret-key",
        "store": {"url": store_url},
        "transport": transport or {"kind": "direct"},
        "sources": {"oa_plain": {"connector": "wechat_oa", "options": {"token": PLAIN_TOKEN, "app_id": "wxplain"}}},
    }


def message(msg_id: int, text: str, ts: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
        f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


@pytest.fixture
def pg() -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


def two_receivers(cfg: dict[str, Any]) -> Iterator[tuple[TestClient, TestClient]]:
    rts: list[Runtime] = [build_runtime(cfg), build_runtime(cfg, migrate=False)]
    clients = [TestClient(create_app(rt), raise_server_exceptions=False) for rt in rts]
    for c in clients:
        c.__enter__()
    try:
        for rt in rts:
            deadline = time.monotonic() + 10
            while not rt.transport.connected and time.monotonic() < deadline:
                time.sleep(0.05)
        yield clients[0], clients[1]
    finally:
        for c in clients:
            c.__exit__(None, None, None)
        for rt in rts:
            rt.close()


def replay_across(first: TestClient, second: TestClient) -> None:
    """Body A through the first receiver, the same (timestamp, nonce, signature) with body B through
    the second: refused; A again through the second: a platform retry, answered."""
    ts = int(time.time())
    query, body_a = wechat_plain(message(1, "原来的消息", ts), token=PLAIN_TOKEN, ts=ts, nonce="n-shared")
    _, body_b = wechat_plain(message(2, "篡改的消息", ts), token=PLAIN_TOKEN, ts=ts, nonce="n-shared")
    assert first.post("/hooks/oa_plain", params=query, content=body_a).status_code == 200
    refused = second.post("/hooks/oa_plain", params=query, content=body_b)
    assert refused.status_code == 401
    assert "nonce replayed with a different body" in refused.text
    assert second.post("/hooks/oa_plain", params=query, content=body_a).status_code == 200


def test_the_store_remembers_nonces_for_every_receiver_on_it(pg: str) -> None:
    cfg = config(pg)
    gen = two_receivers(cfg)
    first, second = next(gen)
    try:
        replay_across(first, second)
    finally:
        gen.close()


def test_nats_remembers_nonces_for_every_receiver(pg: str, nats_url: str, stream: str) -> None:
    cfg = config(pg, {"kind": "nats", "url": nats_url, "stream": stream})
    gen = two_receivers(cfg)
    first, second = next(gen)
    try:
        replay_across(first, second)
    finally:
        gen.close()


def test_store_nonces_expire_and_a_stale_key_is_taken_over(pg_store: Any, clock: Any) -> None:
    nonces = StoreNonces(pg_store)
    a, b = b"a" * 16, b"b" * 16
    assert nonces.claim("src|1|n|s", a, 300)
    assert nonces.claim("src|1|n|s", a, 300)  # the same body: a retry
    assert not nonces.claim("src|1|n|s", b, 300)  # another body: a replay
    clock.advance(seconds=301)
    assert nonces.claim("src|1|n|s", b, 300)  # forgotten after its time: a new key
    assert not nonces.claim("src|1|n|s", a, 300)
    with pg_store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(push_nonces)).scalar_one() == 1


def test_the_connector_cache_asks_the_shared_memory_under_its_source_name(pg_store: Any, clock: Any) -> None:
    shared = StoreNonces(pg_store)
    one = NonceCache(clock, ttl=300, shared=shared, namespace="oa")
    other = NonceCache(clock, ttl=300, shared=shared, namespace="oa")
    elsewhere = NonceCache(clock, ttl=300, shared=shared, namespace="wecom")
    assert one.claim("k", b"body")
    assert not other.claim("k", b"another body")
    assert elsewhere.claim("k", b"another body")  # another source's nonces are its own
