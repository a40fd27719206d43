"""The console's shell: who is asking (session cookie or API token), CSRF, the layout, sign-in
and sign-out, the overview and its tiles, and the event stream. Features add their pages through
``runtime.console`` (see :mod:`hub.console`)."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, insert, select

from hub.console import Console, NavItem
from hub.console.accounts import Accounts, User, audit
from hub.console.i18n import Catalogue, pick_locale
from hub.console.live import FeedReader
from hub.console.schema import console_login_attempts
from hub.console.scope import OrgTree, OrgUnit, Principal
from hub.privacy import mask_identity

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("cxhub.console")

COOKIE = "cxhub_console"
LOGIN_CSRF_COOKIE = "cxhub_console_login"
PREFIX = "/console"
#: the pages' Content-Security-Policy: scripts only from the console's own static files
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ConsoleDenied(Exception):
    """A request the console refuses: 401 (who are you), 403 (not yours), 400/404/422 (bad input)."""

    def __init__(self, status: int, message: str, *, login: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.login = login


def org_tree(rt: Runtime) -> OrgTree:
    """The org hierarchy the installed features declare (``Feature.org_units``)."""
    from hub.registry import installed_features

    units: list[OrgUnit] = []
    for info in installed_features():
        if info.feature is None or info.name not in rt.features:
            continue
        section = rt.config.sections.get(info.feature.section or "")
        for kind, uid, name, parent in info.feature.org_units(section):
            units.append(OrgUnit(uid, kind, name, parent))
    return OrgTree.build(units)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(f"{PREFIX}/api/") or "application/json" in request.headers.get("accept", "")


class ConsoleApp:
    """One process's console: accounts, scope, templates, catalogue, live feed."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.cfg = rt.config.raw.console
        self.registry: Console = rt.console
        self.accounts = Accounts(rt.store, session_hours=self.cfg.session_hours, idle_minutes=self.cfg.idle_minutes)
        self.tree = org_tree(rt)
        self.zone = ZoneInfo(rt.config.raw.timezone)
        self.secure_cookies = rt.config.raw.server.public_url.startswith("https://")
        self.catalogue = Catalogue()
        for folder in self.registry.messages:
            self.catalogue.add_folder(folder)
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(f)) for f in self.registry.templates]),
            autoescape=select_autoescape(["html"], default_for_string=True),
        )
        self.env.filters["localtime"] = self.localtime
        self.env.filters["mask"] = lambda v, ns="phone": mask_identity(ns, str(v)) if v else ""
        self.env.globals["store_name"] = self.tree.store_name
        self.feed = FeedReader(rt.store)

    # -- helpers for pages -------------------------------------------------------------------
    def localtime(self, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None:
            return ""
        return value.astimezone(self.zone).strftime(fmt)

    def t(self, principal: Principal | None, key: str, **values: Any) -> str:
        return self.catalogue.t(principal.locale if principal else self.cfg.locale, key, **values)

    def principal_of(self, user: User, *, via: str, csrf: str = "", requested_locale: str | None = None) -> Principal:
        return Principal.of(
            self.tree,
            user_id=user.id,
            login=user.login,
            display_name=user.display_name,
            role=user.role,
            unit=user.unit,
            reveal_roles=self.cfg.reveal_roles,
            locale=pick_locale(requested_locale, user.locale, self.cfg.locale),
            via=via,
            csrf=csrf,
        )

    def principal(self, request: Request) -> Principal | None:
        """The signed-in user of a request: an API token (``Authorization: Bearer cxt_...``) or the
        session cookie. None when neither is valid."""
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        lang = request.query_params.get("lang") or request.cookies.get("cxhub_lang")
        if scheme.lower() == "bearer" and token.strip():
            user = self.accounts.token_user(token.strip())
            return self.principal_of(user, via="token", requested_locale=lang) if user else None
        sid = request.cookies.get(COOKIE, "")
        found = self.accounts.session_user(sid) if sid else None
        if found is None:
            return None
        user, csrf = found
        return self.principal_of(user, via="session", csrf=csrf, requested_locale=lang)

    async def check_csrf(self, request: Request, principal: Principal) -> None:
        """Unsafe methods from a browser must carry the session's CSRF token (header or form)."""
        if request.method not in UNSAFE or principal.via != "session":
            return
        given = request.headers.get("x-csrf-token", "")
        if not given and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get("csrf")
            given = value if isinstance(value, str) else ""
        if not given or not hmac.compare_digest(given.encode(), principal.csrf.encode()):
            raise ConsoleDenied(403, self.t(principal, "error.csrf"))

    def guard(self, permission: str | None = "data.read") -> Callable[[Request], Any]:
        """A dependency: the request's principal, who must hold ``permission`` (None: any user).
        A user who must change their password reaches only the password page."""

        async def dependency(request: Request) -> Principal:
            principal = await run_in_threadpool(self.principal, request)
            if principal is None:
                raise ConsoleDenied(401, self.t(None, "login.expired"), login=True)
            await self.check_csrf(request, principal)
            if principal.via == "session" and request.url.path != f"{PREFIX}/password":
                user = await run_in_threadpool(self.accounts.get_user, principal.user_id)
                if user.must_change_password:
                    raise ConsoleDenied(403, self.t(principal, "password.must_change"), login=False)
            if permission is not None and not principal.can(permission):
                raise ConsoleDenied(403, self.t(principal, "error.forbidden"))
            request.state.principal = principal
            return principal

        return dependency

    def nav_for(self, principal: Principal) -> list[NavItem]:
        items = [NavItem("nav.overview", "/", "data.read", 0), *self.registry.nav]
        return sorted((i for i in items if principal.can(i.permission)), key=lambda i: (i.order, i.key))

    def render(
        self, request: Request, principal: Principal | None, template: str, *, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        locale = principal.locale if principal else pick_locale(request.query_params.get("lang"), None, self.cfg.locale)
        page = self.env.get_template(template).render(
            request=request,
            me=principal,
            nav=self.nav_for(principal) if principal else [],
            t=lambda key, **kw: self.catalogue.t(locale, key, **kw),
            locale=locale,
            prefix=PREFIX,
            csrf=principal.csrf if principal else "",
            role_label=(lambda r: self.catalogue.t(locale, f"role.{r}")),
            **ctx,
        )
        return HTMLResponse(page, status_code=status)

    def audit(
        self,
        principal: Principal,
        action: str,
        target: str | None,
        detail: Mapping[str, Any] | None = None,
        *,
        store: str | None = None,
    ) -> None:
        with self.rt.store.begin() as conn:
            audit(conn, self.rt.store.clock(), principal.login, action, target, detail, store=store)

    # -- sign-in rate limit -------------------------------------------------------------------
    def throttled(self, login: str, address: str) -> bool:
        since = self.rt.store.clock() - timedelta(minutes=self.cfg.login_window_minutes)
        t = console_login_attempts
        with self.rt.store.connect() as conn:
            by_login = conn.execute(
                select(func.count()).where(t.c.login == login, t.c.at >= since, t.c.ok.is_(False))
            ).scalar_one()
            by_address = conn.execute(
                select(func.count()).where(t.c.address == address, t.c.at >= since, t.c.ok.is_(False))
            ).scalar_one()
        # an address may try a few logins (a shared office NAT): three times the per-login allowance
        return bool(by_login >= self.cfg.login_attempts or by_address >= 3 * self.cfg.login_attempts)

    def record_attempt(self, login: str, address: str, ok: bool) -> None:
        with self.rt.store.begin() as conn:
            conn.execute(
                insert(console_login_attempts).values(
                    at=self.rt.store.clock(), login=login[:128], address=address[:64], ok=ok
                )
            )
            audit(
                conn,
                self.rt.store.clock(),
                login[:128],
                "login.ok" if ok else "login.failed",
                None,
                {"address": address},
            )

    def set_session_cookie(self, response: Response, sid: str) -> None:
        response.set_cookie(
            COOKIE,
            sid,
            max_age=int(self.cfg.session_hours * 3600),
            httponly=True,
            secure=self.secure_cookies,
            samesite="lax",
            path=PREFIX,
        )


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the console only (no open redirect)."""
    if not value:
        return f"{PREFIX}/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(f"{PREFIX}/") or value.startswith("//"):
        return f"{PREFIX}/"
    return value


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def build_core_router(app: ConsoleApp) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    any_user = app.guard(None)

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str | None = None) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = app.render(
            request, None, "login.html", next=safe_next(next), login_csrf=token, error=None, providers=_providers(app)
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            httponly=True,
            secure=app.secure_cookies,
            samesite="strict",
            path=PREFIX,
            max_age=3600,
        )
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        login = str(form.get("login") or "").strip()[:128]
        password = str(form.get("password") or "")
        nxt = safe_next(str(form.get("next") or ""))
        given = str(form.get("login_csrf") or "")
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not given or not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
            raise ConsoleDenied(403, app.t(None, "error.csrf"))
        address = client_address(request)

        def attempt() -> tuple[User | None, bool]:
            if app.throttled(login, address):
                return None, True
            user = app.accounts.authenticate(login, password)
            app.record_attempt(login, address, user is not None)
            return user, False

        user, throttled = await run_in_threadpool(attempt)
        if user is None:
            key = "login.throttled" if throttled else "login.failed"
            token = secrets.token_urlsafe(24)
            response = app.render(
                request,
                None,
                "login.html",
                status=429 if throttled else 401,
                next=nxt,
                login_csrf=token,
                error=app.t(None, key, minutes=int(app.cfg.login_window_minutes)),
                providers=_providers(app),
            )
            response.set_cookie(
                LOGIN_CSRF_COOKIE,
                token,
                httponly=True,
                secure=app.secure_cookies,
                samesite="strict",
                path=PREFIX,
                max_age=3600,
            )
            return response
        sid, _ = await run_in_threadpool(app.accounts.start_session, user)
        target = f"{PREFIX}/password" if user.must_change_password else nxt
        redirect = RedirectResponse(target, status_code=303)
        app.set_session_cookie(redirect, sid)
        redirect.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return redirect

    @router.post("/logout")
    async def logout(request: Request, me: Principal = Depends(any_user)) -> Response:
        sid = request.cookies.get(COOKIE, "")
        if sid:
            await run_in_threadpool(app.accounts.end_session, sid)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @router.post("/logout-all")
    async def logout_all(me: Principal = Depends(any_user)) -> Response:
        n = await run_in_threadpool(app.accounts.end_all_sessions, me.user_id)
        await run_in_threadpool(app.audit, me, "logout.all", f"user:{me.login}", {"sessions": n})
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @router.get("/password", response_class=HTMLResponse)
    def password_page(request: Request, me: Principal = Depends(any_user)) -> HTMLResponse:
        user = app.accounts.get_user(me.user_id)
        return app.render(request, me, "password.html", must_change=user.must_change_password, error=None, done=False)

    @router.post("/password", response_class=HTMLResponse)
    async def change_password(request: Request, me: Principal = Depends(any_user)) -> HTMLResponse:
        form = await request.form()
        current, new, again = (str(form.get(k) or "") for k in ("current", "new", "again"))

        def change() -> tuple[str | None, bool]:
            from hub.console.accounts import AccountError

            user = app.accounts.get_user(me.user_id)
            if new != again:
                return app.t(me, "password.mismatch"), user.must_change_password
            if app.accounts.authenticate(user.login, current) is None:
                return app.t(me, "password.wrong"), user.must_change_password
            try:
                app.accounts.set_password(user.id, new, actor=me.login)
            except AccountError as exc:
                return str(exc), user.must_change_password
            return None, False

        error, must = await run_in_threadpool(change)
        return app.render(
            request, me, "password.html", status=422 if error else 200, must_change=must, error=error, done=not error
        )

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, me: Principal = Depends(app.guard("data.read"))) -> HTMLResponse:
        tiles = sorted((t for t in app.registry.tiles if me.can(t.permission)), key=lambda t: (t.order, t.name))
        return app.render(request, me, "overview.html", tiles=tiles)

    @router.get("/tiles/{name}", response_class=HTMLResponse)
    def tile(request: Request, name: str, me: Principal = Depends(app.guard("data.read"))) -> HTMLResponse:
        found = next((t for t in app.registry.tiles if t.name == name), None)
        if found is None:
            raise ConsoleDenied(404, app.t(me, "error.not_found"))
        if not me.can(found.permission):
            raise ConsoleDenied(403, app.t(me, "error.forbidden"))
        return HTMLResponse(found.render(app, me))  # tiles render escaped

    @router.get("/events")
    async def events(me: Principal = Depends(app.guard(None))) -> StreamingResponse:
        return StreamingResponse(
            app.feed.subscribe(me),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


def _providers(app: ConsoleApp) -> list[str]:
    return [name for name, p in app.cfg.oauth.items() if p.enabled]
