"""Mounting the console on the hub's FastAPI app: static files, the shell, the core's pages, the
features' pages, and the answer to a refused request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from hub.console import HERE, audit, auth, customers, ops, privacy, users
from hub.console.app import PREFIX, SECURITY_HEADERS, ConsoleApp, ConsoleDenied, build_core_router, wants_json

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from hub.runtime import Runtime


class SecurityHeaders:
    """Every answer under /console carries the security headers (a route that forgets them, a JSON
    API, an error of the framework): those the answer has not set are added. Static files keep
    their own caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pages = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        self.files = [(k, v) for k, v in self.pages if k != b"cache-control"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        wanted = self.files if path.startswith(f"{PREFIX}/static/") else self.pages

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in wanted if k not in have]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def install_console(fastapi_app: FastAPI, rt: Runtime) -> ConsoleApp:
    """Mount the console on the hub's app: static files, the shell's routes, the features' routes,
    and the answer to a refused request (a page or JSON, never a stack trace)."""
    app = ConsoleApp(rt)
    fastapi_app.add_middleware(SecurityHeaders)
    fastapi_app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    fastapi_app.include_router(build_core_router(app))
    for module in (auth, users, ops, customers, audit, privacy):  # the core's own pages
        fastapi_app.include_router(module.router(app))
    for factory in rt.console.routers:
        fastapi_app.include_router(factory(app))

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleDenied)
        if wants_json(request) or (request.method != "GET" and request.headers.get("hx-request")):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        if exc.login:
            return RedirectResponse(
                f"{PREFIX}/login?next={quote(str(request.url.path), safe='/')}",
                status_code=303,
            )
        principal = getattr(request.state, "principal", None)
        if exc.status == 403 and principal is None:
            principal = await run_in_threadpool(app.principal, request)
            if principal is not None and request.url.path != f"{PREFIX}/password":
                user = await run_in_threadpool(app.accounts.get_user, principal.user_id)
                if user.must_change_password:
                    return RedirectResponse(f"{PREFIX}/password", status_code=303)
        return app.render(request, principal, "error.html", status=exc.status, message=exc.message)

    fastapi_app.add_exception_handler(ConsoleDenied, denied)
    return app
