"""The hook fast path: POST /hooks/{source} goes straight to the hook handler, the rest to FastAPI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kit.runtime import build_runtime
from standardwebhooks.webhooks import Webhook

from hub.web import HookFastPath, create_app

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


@pytest.fixture
def app(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(
        f'secret_key: k\nstore: {{url: "sqlite:///{tmp_path}/s.db"}}\nsources:\n  reviews:\n    connector: webhook\n'
        f"    mapping: generic_review\n    options: {{secret: {SECRET}, tolerance_seconds: 0}}\n"
    )
    rt = build_runtime(cfg)
    yield create_app(rt)
    rt.close()


def test_hooks_bypass_the_framework_and_everything_else_reaches_it(app: HookFastPath) -> None:
    calls: list[str] = []
    inner = app.app

    async def spy(scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(f"{scope.get('method', scope['type'])} {scope.get('path', '')}")
        await inner(scope, receive, send)

    app.app = spy  # type: ignore[assignment]
    body = json.dumps({"review_id": "r1", "created_at": "2026-11-01 10:00:00", "rating": 5}).encode()
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign("m1", now, body.decode()),
        "content-type": "application/json",
    }
    with TestClient(app) as client:  # type: ignore[arg-type]
        assert client.post("/hooks/reviews", content=body, headers=headers).status_code == 200
        assert (
            client.post("/hooks/reviews", content=body, headers={**headers, "webhook-signature": "v1,x"}).status_code
            == 401
        )
        assert client.post("/hooks/nope", content=body).status_code == 404
        assert [c for c in calls if c.startswith("POST")] == []  # none of the hook POSTs reached FastAPI
        assert client.get("/healthz").status_code == 200
        assert client.post("/hooks/reviews/extra", content=body).status_code in (404, 405)
    assert "GET /healthz" in calls and "POST /hooks/reviews/extra" in calls
