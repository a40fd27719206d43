"""The JetStream transport against the real NATS server and the real PostgreSQL: receivers publish
and answer after JetStream's ack, workers commit then ack, redeliveries are absorbed by the store,
failures end in the dead-letter stream, which the CLI shows and replays."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.databases import temporary_postgres_database
from kit.peers import wechat_safe
from kit.push import OA_AES_KEY, OA_APPID, OA_TOKEN
from kit.runtime import build_runtime
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from hub.runtime import Runtime
from hub.store.schema import inbox, touchpoints
from hub.transport.nats import IngestWorker, NatsTransport, dead_letters, encode
from hub.web import create_app

pytestmark = pytest.mark.postgres


def config(store_url: str, nats_url: str, stream: str, *, sources: bool = True, **transport: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "secret_key": "test-secret-key",
        "store": {"url": store_url},
        "transport": {"kind": "nats", "url": nats_url, "stream": stream, **transport},
        "sources": {},
    }
    if sources:
        cfg["sources"]["oa"] = {
            "connector": "wechat_oa",
            "options": {"token": OA_TOKEN, "encoding_aes_key": OA_AES_KEY, "app_id": OA_APPID},
        }
    return cfg


def push(
    msg_id: int, text: str = "你好", ts: int | None = None, nonce: str | None = None
) -> tuple[dict[str, str], bytes]:
    ts = ts or int(time.time())
    xml = (
        f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oUser{msg_id}]]></FromUserName>"
        f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )
    return wechat_safe(xml, token=OA_TOKEN, aes_key=OA_AES_KEY, appid=OA_APPID, ts=ts, nonce=nonce or f"n{msg_id}")


def count(rt: Runtime, table: Any = touchpoints) -> int:
    with rt.store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _stream_state(url: str, stream: str) -> tuple[int, int]:
    import nats

    nc = await nats.connect(servers=[url])
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        dlq = await js.stream_info(f"{stream}_DLQ")
        return info.state.messages, dlq.state.messages
    finally:
        await nc.close()


def stream_state(url: str, stream: str) -> tuple[int, int]:
    """(records waiting in the stream, dead letters)."""
    return asyncio.run(_stream_state(url, stream))


@pytest.fixture
def pg() -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


def receiver(rt: Runtime) -> TestClient:
    client = TestClient(create_app(rt), raise_server_exceptions=False)
    client.__enter__()
    transport = rt.transport
    assert isinstance(transport, NatsTransport)
    wait_for(lambda: transport.connected, 10)
    return client


def test_receiver_answers_after_the_publish_and_a_worker_stores_each_record_once(
    pg: str, nats_url: str, stream: str
) -> None:
    rt = build_runtime(config(pg, nats_url, stream))
    client = receiver(rt)
    try:
        for i in range(1, 6):
            query, body = push(1000 + i)
            r = client.post("/hooks/oa", params=query, content=body, headers={"content-type": "text/xml"})
            assert r.status_code == 200 and r.text == "success"
        # answered, published, nothing stored yet: the receiver never wrote to the store
        assert count(rt) == 0
        assert stream_state(nats_url, stream) == (5, 0)
        # the platform retries one push: JetStream drops it by its message id
        dup_before = metric("cxhub_transport_duplicates_total", source="oa")
        query, body = push(1001, nonce="retry")
        assert client.post("/hooks/oa", params=query, content=body).status_code == 200
        assert metric("cxhub_transport_duplicates_total", source="oa") == dup_before + 1
        assert stream_state(nats_url, stream) == (5, 0)

        worker = IngestWorker(rt)
        worker.start()
        try:
            wait_for(lambda: count(rt) == 5)
            wait_for(lambda: stream_state(nats_url, stream)[0] == 0)  # acked: the work queue is empty
        finally:
            assert worker.stop(10)
        assert count(rt, inbox) == 5
        assert metric("cxhub_transport_ingested_total", source="oa") >= 5
    finally:
        client.__exit__(None, None, None)
        rt.close()


def test_a_record_redelivered_after_a_crash_is_stored_once(pg: str, nats_url: str, stream: str) -> None:
    """A worker that committed and died before its ack: JetStream redelivers, the store dedups."""
    rt = build_runtime(config(pg, nats_url, stream, ack_wait_seconds=1))
    client = receiver(rt)
    try:
        query, body = push(2001)
        assert client.post("/hooks/oa", params=query, content=body).status_code == 200

        async def commit_without_ack() -> None:
            import nats

            from hub.transport.nats import decode, ensure_streams

            nc = await nats.connect(servers=[nats_url])
            js = nc.jetstream()
            await ensure_streams(js, rt.config.raw.transport)
            sub = await js.pull_subscribe(
                f"cxhub.{stream}.in.>", durable="cxhub-ingest", stream=stream, config=_consumer_config()
            )
            (msg,) = await sub.fetch(1, timeout=5)
            source, record = decode(msg.data)
            rt.ingestor.ingest(source, rt.mapping(source), [record])  # committed ...
            await nc.close()  # ... and gone before the ack, as after a kill -9

        asyncio.run(commit_without_ack())
        assert count(rt) == 1
        redelivered = metric("cxhub_transport_redeliveries_total", source="oa")
        worker = IngestWorker(rt)
        worker.start()
        try:
            wait_for(lambda: stream_state(nats_url, stream)[0] == 0)
        finally:
            worker.stop(10)
        assert metric("cxhub_transport_redeliveries_total", source="oa") == redelivered + 1
        assert count(rt) == 1 and count(rt, inbox) == 1
    finally:
        client.__exit__(None, None, None)
        rt.close()


def _consumer_config() -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig

    return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=1, max_deliver=-1, max_ack_pending=2048)


def test_a_record_that_keeps_failing_goes_to_the_dead_letters_which_the_cli_shows_and_replays(
    pg: str, nats_url: str, stream: str, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from cli import app

    # the receivers know the source; these workers were deployed without it (a config out of step)
    rt = build_runtime(config(pg, nats_url, stream, max_deliver=2))
    worker_rt = build_runtime(config(pg, nats_url, stream, sources=False, max_deliver=2))
    client = receiver(rt)
    try:
        query, body = push(3001, text="菠菜不新鲜")
        assert client.post("/hooks/oa", params=query, content=body).status_code == 200
        dead_before = metric("cxhub_transport_dead_letters_total", source="oa")
        worker = IngestWorker(worker_rt)
        worker.start()
        try:
            wait_for(lambda: stream_state(nats_url, stream) == (0, 1))
        finally:
            worker.stop(10)
        assert metric("cxhub_transport_dead_letters_total", source="oa") == dead_before + 1
        (dl,) = dead_letters(rt.config.raw.transport)
        assert dl.source == "oa" and dl.external_id == "3001" and dl.deliveries == 2
        assert "no source 'oa'" in dl.reason
        assert count(rt) == 0

        path = tmp_path / "cxhub.yaml"
        path.write_text(json.dumps(config(pg, nats_url, stream)), encoding="utf-8")
        env = {"CXHUB_SECRET_KEY": "test-secret-key"}
        shown = CliRunner().invoke(app, ["quarantine", "--config", str(path), "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        rows = [json.loads(line) for line in shown.output.splitlines() if line.strip()]
        assert [(r["id"], r["stage"], r["external_id"]) for r in rows] == [(f"dl-{dl.seq}", "dead-letter", "3001")]
        assert "菠菜不新鲜" in rows[0]["payload"]["Content"]

        replayed = CliRunner().invoke(app, ["replay", "--config", str(path), "--json"], env=env)
        assert replayed.exit_code == 0, replayed.output
        assert json.loads(replayed.output.strip().splitlines()[-1])["stored"] == 1
        assert count(rt) == 1
        assert stream_state(nats_url, stream) == (0, 0)
    finally:
        client.__exit__(None, None, None)
        rt.close()
        worker_rt.close()


def test_a_receiver_that_cannot_publish_answers_503(pg: str, stream: str) -> None:
    """NATS unreachable: the platform gets a 503 (it retries), never a 200 for a record not kept."""
    rt = build_runtime(config(pg, "nats://127.0.0.1:1", stream, publish_timeout_seconds=0.5))
    client = TestClient(create_app(rt), raise_server_exceptions=False)
    with client:
        query, body = push(4001)
        r = client.post("/hooks/oa", params=query, content=body)
        assert r.status_code == 503
        assert not rt.transport.connected
    rt.close()


def test_message_ids_are_the_records_idempotency_keys() -> None:
    from datetime import UTC, datetime

    from hub.sdk.connector import RawRecord, Rejected

    rec = RawRecord("oa", "123", {"Content": "好"}, datetime(2026, 12, 2, tzinfo=UTC))
    assert encode("oa", record=rec)[0] == "oa:123"
    a = encode("oa", rejected=Rejected(None, b"\xff", "not UTF-8"))[0]
    assert a.startswith("oa:rejected:") and a == encode("oa", rejected=Rejected(None, b"\xff", "not UTF-8"))[0]
