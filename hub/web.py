"""The HTTP side of ``cxhub run`` (FastAPI): push-source hooks, health, metrics.

``POST /hooks/{source}`` (and ``GET`` where a platform verifies the URL). For every request, in
this order:

1. unknown or disabled source -> 404;
2. body over ``min(connector.max_body_bytes, server.max_body_bytes)`` -> 413 (checked on the
   declared length and while streaming, so an oversized body is never buffered whole); the
   listener (:mod:`hub.listener`) has already bounded the URL, the headers, the body on every
   route and the time to send them;
3. a content type the connector does not accept -> 415 (a missing header is allowed);
4. the connector verifies (signature, app id, timestamp window, nonce) -> 401 / 403 on failure,
   nothing stored, ``cxhub_hook_signature_failures_total`` counts it; a malformed request -> 400;
5. the records are **durable before** the reply: the request hands them to the transport
   (:mod:`hub.transport`) and waits: with ``direct`` (the default) for the group-commit writer's
   commit (:mod:`hub.group_commit`), with ``nats`` for JetStream's ack of every record (ingest
   workers commit them); a failure or timeout -> 503 so that the platform retries. A replay check
   that cannot reach its shared memory (the store's nonce table, the NATS bucket) -> 503 too;
6. the connector's reply (WeChat ``success``, an encrypted DingTalk ``success``, a Feishu challenge
   ...). A verified payload that fails its mapping is quarantined by the ingest and still answered.

No response or log line carries a secret: error texts come from the connectors' reasons, which
name fields, never values of credentials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from hub.console.app import ConsoleApp
from hub.console.mount import install_console
from hub.errors import PayloadError, RetriableError, SignatureError
from hub.group_commit import GroupCommitWriter
from hub.operator import operator_guard, publish_openapi
from hub.runtime import Runtime
from hub.sdk.connector import InboundRequest, PushSource, Reply
from hub.transport import DeferredNonces, build_transport

log = logging.getLogger("cxhub.web")
T = TypeVar("T")

HOOK_REQUESTS = Counter("cxhub_hook_requests_total", "Webhook requests by source and outcome", ["source", "outcome"])
SIGNATURE_FAILURES = Counter(
    "cxhub_hook_signature_failures_total", "Webhook requests refused by verification (401/403)", ["source"]
)
HOOK_SECONDS = Histogram(
    "cxhub_hook_seconds",
    "Webhook request time until the reply, store commit included",
    ["source"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

#: how long a request waits for its commit before answering 503 (WeChat gives up after 5 s)
STORE_TIMEOUT_SECONDS = 4.0  # the direct transport's (hub.transport.direct)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cxhub")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


def _reply(r: Reply) -> Response:
    return Response(content=r.body, status_code=r.status, media_type=r.content_type, headers=dict(r.headers))


def _text(status: int, message: str) -> Response:
    return Response(f"{message}\n", status_code=status, media_type="text/plain; charset=utf-8")


class HookFastPath:
    """``POST /hooks/{source}`` straight to its handler; every other request to the FastAPI app.

    At webhook rates FastAPI / Starlette's middleware and routing layers took about a third of the
    event loop's time (py-spy). The hook handler needs none of them: it reads its own input, and
    ``guarded`` turns every connector error into a 4xx, so nothing is left for the error middleware.
    """

    def __init__(self, app: FastAPI, hook: Callable[[Request], Awaitable[Response]]):
        self.app = app
        self.hook = hook
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            source = path[len("/hooks/") :]
            if path.startswith("/hooks/") and source and "/" not in source:  # the route's {source}
                scope["path_params"] = {"source": source}
                response = await self.hook(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(rt: Runtime, *, writer: GroupCommitWriter | None = None) -> HookFastPath:
    """The ASGI app for a runtime (FastAPI behind the hook fast path); features add routers through
    ``rt.routers``."""
    transport = rt.transport if writer is None else build_transport(rt, writer)
    # a replay check that asks a shared memory (the store, NATS) waits on the network: connectors
    # only note their claims, and the request awaits them after the connector's handle
    nonces = rt.context.nonces if isinstance(rt.context.nonces, DeferredNonces) else None
    window = rt.config.raw.server.replay_window_seconds
    # build every push source now: a connector that cannot start fails `cxhub run`, not a request
    for name, spec in rt.config.sources.items():
        if spec.config.enabled and issubclass(spec.cls, PushSource):
            src = rt.push_source(name)
            if src is not None:
                src.replay_window_seconds = window

    console: list[ConsoleApp] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await transport.start()
        try:
            yield
        finally:
            for c in console:
                await c.feed.close()
            await transport.stop()

    # the OpenAPI description is served by hub.operator, behind the operator guard
    app = FastAPI(
        title="cxhub",
        version=_version(),
        description="Webhooks, survey pages, staff links, health and metrics of one cxhub process.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.transport = transport
    app.state.group_commit = getattr(transport, "writer", None)

    async def inbound(source: str, request: Request) -> tuple[PushSource, InboundRequest] | Response:
        src = rt.push_source(source) if source in rt.config.sources else None
        if src is None:
            HOOK_REQUESTS.labels("unknown", "not_found").inc()
            return _text(404, "unknown source")
        limit = min(src.max_body_bytes, rt.config.raw.server.max_body_bytes)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            HOOK_REQUESTS.labels(source, "too_large").inc()
            return _text(413, f"body over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    HOOK_REQUESTS.labels(source, "too_large").inc()
                    return _text(413, f"body over {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            # gone mid-body, or cut off by the listener's bounds (hub.listener): nothing to handle,
            # and nobody to read this answer
            HOOK_REQUESTS.labels(source, "disconnected").inc()
            return _text(400, "request body incomplete")
        headers = {k.lower(): v for k, v in request.headers.items()}
        req = InboundRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers=headers,
            body=b"".join(chunks),
            received_at=rt.clock(),
            remote=request.client.host if request.client else None,
        )
        wanted = src.content_types
        if request.method == "POST" and wanted and req.content_type and req.content_type not in wanted:
            HOOK_REQUESTS.labels(source, "bad_content_type").inc()
            return _text(415, f"content type {req.content_type[:80]!r}: expected {', '.join(wanted)}")
        return src, req

    def refused(source: str, exc: SignatureError, remote: str | None) -> Response:
        HOOK_REQUESTS.labels(source, "bad_signature").inc()
        SIGNATURE_FAILURES.labels(source).inc()
        log.warning("source %s: refused request from %s: %s", source, remote or "?", exc.reason)
        return _text(exc.status_code, exc.reason)

    def guarded(source: str, what: str, call: Callable[[], T], remote: str | None) -> T | Response:
        """Run a connector call; its errors become the right 4xx (never a 5xx retry storm)."""
        try:
            return call()
        except SignatureError as exc:
            return refused(source, exc, remote)
        except PayloadError as exc:
            HOOK_REQUESTS.labels(source, "bad_request").inc()
            return _text(400, exc.reason)
        except RetriableError as exc:  # the replay check's shared memory is unreachable: retry later
            HOOK_REQUESTS.labels(source, "unavailable").inc()
            log.warning("source %s: %s; answering 503 so the platform retries", source, exc)
            return _text(503, "temporarily unavailable")
        except Exception:
            # a connector bug must not become a 5xx retry storm; the traceback has no secrets
            # (connectors keep them in SecretStr options, not in locals of the failing frame)
            log.exception("source %s: %s crashed", source, what)
            HOOK_REQUESTS.labels(source, "error").inc()
            return _text(400, "cannot process this request")

    async def settle(source: str, claims: list[tuple[str, bytes, float]], remote: str | None) -> Response | None:
        """Await the nonce claims the connector noted: a replay is refused as the connector refuses
        one (401), an unreachable shared memory answers 503 (the platform retries)."""
        assert nonces is not None
        try:
            if await nonces.settle(claims):
                return None
        except RetriableError as exc:
            HOOK_REQUESTS.labels(source, "unavailable").inc()
            log.warning("source %s: %s; answering 503 so the platform retries", source, exc)
            return _text(503, "temporarily unavailable")
        return refused(source, SignatureError("nonce replayed with a different body", source=source), remote)

    async def verify_url(request: Request) -> Response:
        source = request.path_params["source"]
        got = await inbound(source, request)
        if isinstance(got, Response):
            return got
        src, req = got
        claims = DeferredNonces.collect() if nonces else None
        reply = guarded(source, "URL verification", lambda: src.verify_url(req), req.remote)
        if isinstance(reply, Response):
            return reply
        if claims:
            refusal = await settle(source, claims, req.remote)
            if refusal is not None:
                return refusal
        HOOK_REQUESTS.labels(source, "verified_url").inc()
        return _reply(reply)

    async def hook(request: Request) -> Response:
        source = request.path_params["source"]
        started = time.perf_counter()
        got = await inbound(source, request)
        if isinstance(got, Response):
            return got
        src, req = got
        claims = DeferredNonces.collect() if nonces else None
        result = guarded(source, "handling a push", lambda: src.handle(req), req.remote)
        if isinstance(result, Response):
            return result
        if claims:
            refusal = await settle(source, claims, req.remote)
            if refusal is not None:
                return refusal
        if result.records or result.rejected:
            try:
                await transport.hand_off(source, result.records, result.rejected)
            except Exception as exc:
                log.warning(
                    "source %s: %s hand-off failed (%s); answering 503 so the platform retries",
                    source,
                    transport.kind,
                    type(exc).__name__,
                )
                HOOK_REQUESTS.labels(source, "store_failed").inc()
                return _text(503, "temporarily unavailable")
        HOOK_REQUESTS.labels(source, "ok").inc()
        HOOK_SECONDS.labels(source).observe(time.perf_counter() - started)
        return _reply(result.reply)

    # plain Starlette routes: the hooks parse their own input, and skipping FastAPI's parameter
    # machinery is a measurable share of the per-request CPU at webhook rates
    app.add_route("/hooks/{source}", verify_url, methods=["GET"])
    app.add_route("/hooks/{source}", hook, methods=["POST"])

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        from sqlalchemy import text

        with rt.store.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    #: what ``/readyz`` asks besides the store: name -> True when ready. The transport's connection
    #: is here; a piece of a role that must be connected before the process takes work adds its own.
    app.state.ready_checks = {"transport": lambda: bool(transport.connected)}

    @app.get("/readyz")
    def readyz() -> Response:
        """Ready for traffic (``/healthz`` only says the process lives): the store answers, its
        schema is current (a process started with ``--no-migrate`` before ``cxhub migrate`` is
        not), and every check of ``app.state.ready_checks`` passes. 200 or 503, with each check."""
        status = rt.store.schema_status()
        checks: dict[str, str] = {"store": "ok" if status == "current" else status}
        for name, check in app.state.ready_checks.items():
            try:
                checks[name] = "ok" if check() else "not connected"
            except Exception as exc:
                checks[name] = f"failed: {type(exc).__name__}"
        import json

        ready = all(v == "ok" for v in checks.values())
        body = json.dumps({"status": "ready" if ready else "not ready", "checks": checks})
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    @app.get(
        "/metrics",
        dependencies=[Depends(operator_guard(rt.config.raw))],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
            401: {"description": "operator token missing or wrong"},
            403: {"description": "no operator token set on a server bound beyond loopback"},
        },
    )
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in rt.routers:
        # a feature may give a factory instead of a router: FastAPI then loads only when a server starts
        app.include_router(router if isinstance(router, APIRouter) else router())
    if rt.config.raw.console.enabled:  # the web console at /console (hub/console)
        console.append(install_console(app, rt))
    publish_openapi(app, rt.config.raw)
    return HookFastPath(app, hook)
