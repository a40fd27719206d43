"""The HTTP side of ``cxhub run`` (FastAPI): push-source hooks, health, metrics.

``POST /hooks/{source}`` (and ``GET`` where a platform verifies the URL): the connector verifies
and parses; the records are **committed before** the platform gets its reply.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from hub.connector import InboundRequest, PushSource, Reply
from hub.errors import PayloadError, SignatureError
from hub.runtime import Runtime

log = logging.getLogger("cxhub.web")

HOOK_REQUESTS = Counter("cxhub_hook_requests_total", "Webhook requests by source and outcome", ["source", "outcome"])


def _reply(r: Reply) -> Response:
    return Response(content=r.body, status_code=r.status, media_type=r.content_type, headers=dict(r.headers))


def create_app(rt: Runtime) -> FastAPI:
    """The FastAPI app for a runtime; features add routers through ``rt.routers``."""
    app = FastAPI(title="cxhub", docs_url=None, redoc_url=None)

    async def inbound(source: str, request: Request) -> tuple[PushSource | None, InboundRequest | Response]:
        src = rt.push_source(source)
        if src is None:
            HOOK_REQUESTS.labels("unknown", "not_found").inc()
            return None, Response("unknown source\n", status_code=404, media_type="text/plain")
        limit = min(src.max_body_bytes, rt.config.raw.server.max_body_bytes)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            HOOK_REQUESTS.labels(source, "too_large").inc()
            return None, Response(f"body over {limit} bytes\n", status_code=413, media_type="text/plain")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                HOOK_REQUESTS.labels(source, "too_large").inc()
                return None, Response(f"body over {limit} bytes\n", status_code=413, media_type="text/plain")
        req = InboundRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            received_at=rt.clock(),
            remote=request.client.host if request.client else None,
        )
        return src, req

    @app.get("/hooks/{source}")
    async def verify_url(source: str, request: Request) -> Response:
        src, req = await inbound(source, request)
        if src is None or isinstance(req, Response):
            return req  # type: ignore[return-value]
        try:
            return _reply(src.verify_url(req))
        except SignatureError as exc:
            HOOK_REQUESTS.labels(source, "bad_signature").inc()
            return Response(f"{exc.reason}\n", status_code=exc.status_code, media_type="text/plain")
        except PayloadError as exc:
            return Response(f"{exc.reason}\n", status_code=400, media_type="text/plain")

    @app.post("/hooks/{source}")
    async def hook(source: str, request: Request) -> Response:
        src, req = await inbound(source, request)
        if src is None or isinstance(req, Response):
            return req  # type: ignore[return-value]
        try:
            result = src.handle(req)
        except SignatureError as exc:
            HOOK_REQUESTS.labels(source, "bad_signature").inc()
            return Response(f"{exc.reason}\n", status_code=exc.status_code, media_type="text/plain")
        except PayloadError as exc:
            HOOK_REQUESTS.labels(source, "bad_payload").inc()
            return Response(f"{exc.reason}\n", status_code=400, media_type="text/plain")
        if result.records:
            try:
                await run_in_threadpool(rt.ingestor.ingest, source, rt.mapping(source), result.records)
            except Exception:
                log.exception("storing a push from %s failed; the platform will retry", source)
                HOOK_REQUESTS.labels(source, "store_failed").inc()
                return Response("temporarily unavailable\n", status_code=503, media_type="text/plain")
        HOOK_REQUESTS.labels(source, "ok").inc()
        return _reply(result.reply)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        from sqlalchemy import text

        with rt.store.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in rt.routers:
        app.include_router(router)
    return app
