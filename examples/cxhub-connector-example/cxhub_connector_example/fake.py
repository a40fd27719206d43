"""An in-memory fake of the NPS vendor's API, for tests and demos.

:meth:`FakeNpsApi.handler` plugs into ``httpx.MockTransport`` (inject it through
``ConnectorContext(transport=...)``); :meth:`FakeNpsApi.serve` runs the same API over real HTTP in
a thread (for ``cxhub sync`` in a subprocess). Failures are scripted with :attr:`FakeNpsApi.fail`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

MAX_PAGE = 100


def sample_answers(count: int = 5) -> list[dict[str, Any]]:
    """``count`` answers as the vendor returns them: detractors, passives and promoters."""
    comments = ["排队太久，收银台只开了一个", "还行", "店员很热情，下次还来", "生鲜不新鲜", "环境干净"]
    return [
        {
            "id": f"ans_{i:04d}",
            "survey_id": "store-nps",
            "score": (3, 7, 10, 2, 9)[(i - 1) % 5],
            "comment": comments[(i - 1) % 5],
            "submitted_at": f"2026-11-01T{8 + i % 12:02d}:{i % 60:02d}:00+08:00",
            "store_code": f"S00{1 + i % 3}",
            "respondent": {"member_no": f"M{1000 + i}", "mobile": f"138{i:08d}"},
        }
        for i in range(1, count + 1)
    ]


class FakeNpsApi:
    """The vendor's answers feed and follow-up endpoint, in memory.

    The cursor is the number of answers already delivered, as text (opaque to the connector).
    ``fail`` is a list of HTTP statuses the next requests get instead of an answer.
    """

    def __init__(self, api_key: str = "demo-api-key", answers: list[dict[str, Any]] | None = None):
        self.api_key = api_key
        self.answers = list(sample_answers() if answers is None else answers)
        self.followups: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> posted body
        self.fail: list[int] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, *answers: dict[str, Any]) -> None:
        """New answers arrive at the vendor."""
        with self._lock:
            self.answers.extend(answers)

    # ------------------------------------------------------------ the API

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one request (``headers`` with lower-case names)."""
        with self._lock:
            self.requests.append((method, path))
            if self.fail:
                status = self.fail.pop(0)
                return status, {"ok": False, "error": {"code": f"http_{status}"}}
            if headers.get("authorization") != f"Bearer {self.api_key}":
                return 401, {"ok": False, "error": {"code": "unauthorized"}}
            if method == "GET" and path == "/v1/answers":
                return self._answers(query)
            if method == "POST" and path == "/v1/followups":
                return self._followup(headers, body)
            return 404, {"ok": False, "error": {"code": "not_found"}}

    def _answers(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            start = int(query.get("cursor") or 0)
            limit = int(query.get("limit") or MAX_PAGE)
        except ValueError:
            return 400, {"ok": False, "error": {"code": "bad_cursor"}}
        if not (0 <= start <= len(self.answers)) or not (1 <= limit <= MAX_PAGE):
            return 400, {"ok": False, "error": {"code": "bad_cursor"}}
        survey = query.get("survey_id")
        end = min(len(self.answers), start + limit)
        page = [a for a in self.answers[start:end] if not survey or a.get("survey_id") == survey]
        return 200, {"data": page, "next_cursor": str(end), "has_more": end < len(self.answers)}

    def _followup(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        key = headers.get("idempotency-key")
        if not key:
            return 400, {"ok": False, "error": {"code": "idempotency_key_required"}}
        data = json.loads(body or b"{}")
        if not any(a.get("id") == data.get("answer_id") for a in self.answers):
            return 200, {"ok": False, "error": {"code": "answer_not_found", "message": "no such answer"}}
        self.followups.setdefault(key, data)
        return 201, {"ok": True, "followup_id": f"fu_{list(self.followups).index(key) + 1}"}

    # ------------------------------------------------------------ transports

    def handler(self, request: httpx.Request) -> httpx.Response:
        """For ``httpx.MockTransport(api.handler)``."""
        query = {k: v for k, v in request.url.params.items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, data = self.respond(request.method, request.url.path, query, headers, request.read())
        return httpx.Response(status, json=data)

    @contextmanager
    def serve(self, host: str = "127.0.0.1") -> Iterator[str]:
        """Serve the API over HTTP on a free port in a thread; yields its base URL."""
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, data = api.respond(self.command, parts.path, query, headers, body)
                raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = _reply
            do_POST = _reply

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

        server = ThreadingHTTPServer((host, 0), Handler)
        thread = threading.Thread(target=server.serve_forever, name="fake-nps-api", daemon=True)
        thread.start()
        try:
            yield f"http://{host}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


__all__ = ["FakeNpsApi", "sample_answers"]
