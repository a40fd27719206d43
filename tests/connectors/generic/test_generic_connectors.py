"""The two generic connectors: jsonl (pull) and webhook (push), plus the conformance suite."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from connectors.jsonl import JsonlOptions, JsonlSource
from connectors.webhook import SignedWebhookSource, WebhookOptions
from hub.errors import SignatureError
from hub.sdk.connector import ConnectorContext, InboundRequest
from hub.sdk.testing import ConnectorConformance, FakeClock

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


class TestJsonlConformance(ConnectorConformance):
    connector_kind = "jsonl"
    options = {"path": "/tmp", "id_path": "id"}


class TestWebhookConformance(ConnectorConformance):
    connector_kind = "webhook"
    options = {"secret": SECRET}


def jsonl(tmp_path: Path, lines: list[bytes], batch_size: int = 2) -> JsonlSource:
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"".join(lines))
    return JsonlSource("drops", JsonlOptions(path=str(tmp_path), id_path="id", batch_size=batch_size))


def test_jsonl_reads_in_batches_and_resumes_from_the_offset(tmp_path: Path) -> None:
    src = jsonl(tmp_path, [json.dumps({"id": i}).encode() + b"\n" for i in range(5)])
    batches = list(src.read(None))
    assert [len(b.records) for b in batches] == [2, 2, 1]
    state = batches[1].state
    rest = list(src.read(state))
    assert [r.external_id for b in rest for r in b.records] == ["4"]
    with (tmp_path / "a.jsonl").open("ab") as fh:
        fh.write(b'{"id": 5}\n{"id": 6')  # the last line is still being written
    more = list(src.read(batches[-1].state))
    assert [r.external_id for b in more for r in b.records] == ["5"]
    with (tmp_path / "a.jsonl").open("ab") as fh:
        fh.write(b"}\n")
    assert [r.external_id for b in src.read(more[-1].state) for r in b.records] == ["6"]


def test_jsonl_estimates_the_lines_left_for_the_progress_bar(tmp_path: Path) -> None:
    src = jsonl(tmp_path, [json.dumps({"id": i}).encode() + b"\n" for i in range(5)])
    assert src.estimate(None) == 5
    batches = list(src.read(None))
    assert src.estimate(batches[0].state) == 3  # after the committed offset
    (tmp_path / "b.jsonl").write_bytes(b'{"id": "b1"}\n{"id": "b2"}')  # the last line has no newline yet
    assert src.estimate(batches[-1].state) == 2
    missing = JsonlSource("drops", JsonlOptions(path=str(tmp_path / "nowhere"), id_path="id"))
    assert missing.estimate(None) is None  # the read says why


def test_jsonl_rejects_bad_lines_with_reasons(tmp_path: Path) -> None:
    src = jsonl(
        tmp_path, [b'{"id": 1}\n', b"{not json\n", b"\xff\xfe\n", b'{"no_id": 1}\n', b"\n", b'{"id": 2}\n'], 100
    )
    (batch,) = list(src.read(None))
    assert [r.external_id for r in batch.records] == ["1", "2"]
    reasons = [r.reason for r in batch.rejected]
    assert any("invalid JSON" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)
    assert any("gives no usable id" in r for r in reasons)
    assert all(r.external_id and r.external_id.startswith("a.jsonl:") for r in batch.rejected)


def test_jsonl_full_resync_and_truncated_file(tmp_path: Path) -> None:
    src = jsonl(tmp_path, [b'{"id": 1}\n', b'{"id": 2}\n'], 100)
    state = list(src.read(None))[-1].state
    assert list(src.read(state)) == []
    assert len(next(iter(src.read(state, full=True))).records) == 2
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 9}\n')  # rotated: smaller than the offset
    assert [r.external_id for b in src.read(state) for r in b.records] == ["9"]


def signed(body: bytes, clock: FakeClock, msg_id: str = "msg_1", secret: str = SECRET) -> dict[str, str]:
    sig = Webhook(secret).sign(msg_id, clock(), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(clock().timestamp())),
        "webhook-signature": sig,
        "content-type": "application/json",
    }


def webhook(clock: FakeClock, **opts: object) -> SignedWebhookSource:
    return SignedWebhookSource("hook", WebhookOptions(secret=SECRET, **opts), ConnectorContext(clock=clock))


def req(body: bytes, headers: dict[str, str], clock: FakeClock) -> InboundRequest:
    return InboundRequest("POST", "/hooks/hook", {}, headers, body, clock())


def test_webhook_accepts_a_valid_signature_and_splits_records() -> None:
    clock = FakeClock()
    body = json.dumps({"items": [{"id": "a"}, {"id": "b"}]}).encode()
    src = webhook(clock, records_path="items", id_path="id")
    result = src.handle(req(body, signed(body, clock), clock))
    assert [r.external_id for r in result.records] == ["a", "b"]
    assert result.reply.status == 200


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda h, b: {**h, "webhook-signature": "v1,AAAA"}, "does not match"),
        (lambda h, b: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing"),
        (lambda h, b: {**h, "webhook-timestamp": "yesterday"}, "not a Unix timestamp"),
        (lambda h, b: {**h, "webhook-id": "msg_other"}, "does not match"),
    ],
)
def test_webhook_refuses_bad_signatures(mutate, needle: str) -> None:
    clock = FakeClock()
    body = b'{"id": 1}'
    with pytest.raises(SignatureError, match=needle):
        webhook(clock).handle(req(body, mutate(signed(body, clock), body), clock))


def test_webhook_refuses_a_tampered_body() -> None:
    clock = FakeClock()
    headers = signed(b'{"rating": 5}', clock)
    with pytest.raises(SignatureError):
        webhook(clock).handle(req(b'{"rating": 1}', headers, clock))


def test_webhook_timestamp_window_is_configurable() -> None:
    clock = FakeClock()
    body = b'{"id": 1}'
    headers = signed(body, clock)
    clock.advance(seconds=301)
    with pytest.raises(SignatureError, match="outside the 300s window"):
        webhook(clock).handle(req(body, headers, clock))
    assert webhook(clock, tolerance_seconds=0).handle(req(body, headers, clock)).records
    clock.now -= timedelta(seconds=1000)  # from the future too
    with pytest.raises(SignatureError):
        webhook(clock, tolerance_seconds=60).handle(req(body, headers, clock))


def test_webhook_signed_but_not_json_is_rejected_for_the_quarantine_and_answered() -> None:
    clock = FakeClock()
    body = b"<xml/>"
    result = webhook(clock).handle(req(body, signed(body, clock), clock))
    assert result.records == [] and result.reply.status == 200
    (bad,) = result.rejected
    assert "not JSON" in bad.reason and bad.payload == {"body": "<xml/>"} and bad.external_id == "msg_1"


# lines where orjson (the fast path) and json.loads differ or fail: the connector must give what
# json.loads gives, exactly, for all of them
TRICKY_LINES = [
    b'{"id": 1, "n": 123456789012345678901234567890}',  # beyond 64 bits: orjson would give a float
    b'{"id": 2, "n": -9223372036854775809}',
    b'{"id": 3, "n": 18446744073709551615}',
    b'{"id": 4, "x": NaN, "y": Infinity, "z": -Infinity}',  # not JSON, taken by json.loads
    b'{"id": 5, "big": 1E400}',
    b'{"id": 6, "s": "\\ud800"}',  # a lone surrogate escape
    b'{"id": 7, "phone": "13800138000", "order": "20261122000000000001234"}',  # long digits in strings
    b'{"id": 8, "name": "\xe7\x94\x9f\xe9\xb2\x9c", "f": 1.0000000000000002, "neg": -0.0, "e": 1.5e-400}',
    b'{"id": 9, "a": 1, "a": 2}',  # a repeated key: the last wins in both
    b'  {"id": 10, "nested": {"deep": [1, [2, [3, {"k": null}]]]}}  ',
    b"null",
    b"[1, 2]",
    b'"just a string"',
]


def test_jsonl_parses_every_line_as_json_loads_does(tmp_path: Path) -> None:
    src = jsonl(tmp_path, [line + b"\n" for line in TRICKY_LINES], 100)
    (batch,) = list(src.read(None))
    got = {r.external_id: r.payload for r in batch.records}
    for line in TRICKY_LINES:
        expected = json.loads(line.strip())
        if isinstance(expected, dict):
            value = got[str(expected["id"])]
            assert json.dumps(value, sort_keys=True) == json.dumps(expected, sort_keys=True), line
            assert value == expected or "NaN" in line.decode(), line
    assert isinstance(got["1"]["n"], int) and got["1"]["n"] == 123456789012345678901234567890
    assert isinstance(got["3"]["n"], int)
    assert got["7"]["order"] == "20261122000000000001234"
    # lines without a usable id are rejected with the reason, as before
    assert len(batch.rejected) == 3 and all("gives no usable id" in r.reason for r in batch.rejected)
