"""The bounds of ``cxhub run``'s listener (hub/listener.py), against a real ``cxhub run`` process.

Raw sockets, not TestClient: the bounds live in the HTTP parser, which TestClient bypasses.
Sizes are the defaults of ``server:``; the timeouts are shortened so the slow clients take a second.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from hub.store import Store
from hub.store.schema import inbox, quarantine, touchpoints

CXHUB = str(Path(sys.executable).with_name("cxhub"))
SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="
HEAD_TIMEOUT = 1.0


@dataclass
class Served:
    port: int
    store_url: str

    def stored(self) -> int:
        store = Store(self.store_url)
        try:
            with store.connect() as conn:
                return sum(
                    int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                    for t in (inbox, touchpoints, quarantine)
                )
        finally:
            store.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("limits")
    cfg = tmp / "cxhub.yaml"
    cfg.write_text(
        f"""\
secret_key: limits-test-secret
store: {{url: "sqlite:///{tmp}/store.db"}}
server: {{head_timeout_seconds: {HEAD_TIMEOUT}, body_timeout_seconds: {HEAD_TIMEOUT}}}
sources:
  reviews:
    connector: webhook
    mapping: generic_review
    options: {{secret: {SECRET}, id_path: review_id}}
"""
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CXHUB_STORE_URL", "CXHUB_SECRET_KEY")}
    proc = subprocess.Popen(
        [CXHUB, "run", "-c", str(cfg), "--port", str(port)],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            proc.kill()
            pytest.fail("cxhub run did not become healthy: " + proc.communicate()[0].decode()[-2000:])
        yield Served(port, f"sqlite:///{tmp}/store.db")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def signed(review_id: str) -> tuple[bytes, dict[str, str]]:
    """A correctly signed one-star review, as the platform sends it."""
    from standardwebhooks.webhooks import Webhook

    body = json.dumps(
        {"review_id": review_id, "created_at": "2026-11-01 10:00:00", "rating": 1, "content": "差"}
    ).encode()
    now = datetime.now(UTC)
    return body, {
        "webhook-id": review_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(review_id, now, body.decode()),
        "content-type": "application/json",
    }


def head(path: str, headers: dict[str, str] | list[tuple[str, str]], *, length: int | None) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in items)]
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, *parts: bytes, timeout: float = 10) -> tuple[int | None, float]:
    """Send the parts, read until the server closes: (status or None, seconds until closed).
    A status with the connection still open after ``timeout`` fails the test."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            for part in parts:
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"connection still open after {timeout} s; read {got[:80]!r}")
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else None
    return status, time.monotonic() - started


def test_a_signed_request_with_a_1mb_header_is_refused_431_and_nothing_stored(served: Served) -> None:
    body, headers = signed("big-header")
    headers["x-pad"] = "a" * 1_000_000
    status, _ = exchange(served.port, head("/hooks/reviews", headers, length=len(body)) + body)
    assert status == 431
    assert served.stored() == 0


def test_an_8mb_header_sent_in_pieces_is_refused_431(served: Served) -> None:
    body, headers = signed("huge-header")
    start = head("/hooks/reviews", headers, length=len(body))[:-2] + b"x-pad: "
    status, _ = exchange(served.port, start, *([b"b" * 65536] * 128), b"\r\n\r\n" + body)
    assert status == 431
    assert served.stored() == 0


def test_200_small_headers_are_refused_431(served: Served) -> None:
    body, headers = signed("many-headers")
    many = [*headers.items(), *((f"x-h{i}", "1") for i in range(200))]
    status, _ = exchange(served.port, head("/hooks/reviews", many, length=len(body)) + body)
    assert status == 431
    assert served.stored() == 0


def test_a_100kb_url_is_refused_414(served: Served) -> None:
    body, headers = signed("long-url")
    status, _ = exchange(served.port, head("/hooks/reviews?q=" + "u" * 100_000, headers, length=len(body)) + body)
    assert status == 414
    assert served.stored() == 0


def test_a_chunked_body_over_the_limit_is_refused_413_on_every_route(served: Served) -> None:
    chunk = b"%x\r\n%s\r\n" % (65536, b"{" * 65536)
    # a hook, and a feature's form route (the case links): both read their body
    for path, content_type in (
        ("/hooks/reviews", "application/json"),
        ("/cases/1/ack", "application/x-www-form-urlencoded"),
    ):
        _, headers = signed("chunked")
        headers["content-type"] = content_type
        status, _ = exchange(served.port, head(path, headers, length=None), *([chunk] * 40), b"0\r\n\r\n")
        assert status == 413, path
    assert served.stored() == 0


def test_a_declared_body_over_the_limit_is_refused_413_before_it_is_sent(served: Served) -> None:
    _, headers = signed("declared")
    status, _ = exchange(served.port, head("/healthz", headers, length=50 * 1024 * 1024))
    assert status == 413


def test_a_client_that_stalls_mid_head_gets_408_within_the_bound(served: Served) -> None:
    body, headers = signed("slow-head")
    half = head("/hooks/reviews", headers, length=len(body))[:60]
    status, seconds = exchange(served.port, half, timeout=HEAD_TIMEOUT + 5)
    assert status == 408
    assert seconds < HEAD_TIMEOUT + 3
    assert served.stored() == 0


def test_a_client_that_stalls_mid_body_gets_408_and_nothing_is_stored(served: Served) -> None:
    body, headers = signed("slow-body")
    status, seconds = exchange(
        served.port, head("/hooks/reviews", headers, length=len(body)) + body[:10], timeout=HEAD_TIMEOUT + 5
    )
    assert status == 408
    assert seconds < HEAD_TIMEOUT + 3
    assert served.stored() == 0


def test_a_connection_that_sends_nothing_is_closed_within_the_bound(served: Served) -> None:
    status, seconds = exchange(served.port, timeout=HEAD_TIMEOUT + 5)
    assert status is None
    assert seconds < HEAD_TIMEOUT + 3


def test_a_normal_signed_request_is_still_stored(served: Served) -> None:
    before = served.stored()
    body, headers = signed("normal")
    headers["x-pad"] = "a" * 4000  # well inside the bounds
    r = httpx.post(f"http://127.0.0.1:{served.port}/hooks/reviews?x={'q' * 2000}", content=body, headers=headers)
    assert r.status_code == 200
    assert served.stored() > before
    # and keep-alive still serves several requests on one connection
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as client:
        assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]
