"""Console pages: the users page of admins: accounts, roles, platform links, sessions, API tokens.

Everything here needs ``users.manage`` (admins, who are HQ-wide: no store scope applies to the
accounts themselves). Every change is a CSRF-checked POST (the shell's guard) and lands in the
audit log with the admin's login (the :class:`~hub.console.accounts.Accounts` methods write it in
the change's own transaction). A generated initial password or a new API token is shown once, on
the answer to the POST that made it, and never again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hub.console import NavItem
from hub.console.accounts import PROVIDERS, AccountError, User, generate_password
from hub.console.app import PREFIX, ConsoleDenied
from hub.console.scope import ROLE_UNIT, ROLES, Principal, ScopeError

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp

PAGE_SIZE = 100
#: what an admin does to one user: POST /console/users/{id}/<action>
ACTIONS = ("disable", "enable", "password", "logout", "tokens", "link", "unlink")


def router(app: ConsoleApp) -> APIRouter:
    r = APIRouter(prefix=PREFIX, include_in_schema=False)
    manage = app.guard("users.manage")
    item = NavItem("nav.users", "/users", "users.manage", 90)
    if item not in app.registry.nav:  # a second web app on the same runtime (tests) adds no twin
        app.registry.add_nav(item)

    def unit_label(unit: str | None, role: str) -> str:
        if not unit:
            return ""
        kind = ROLE_UNIT.get(role)
        node = app.tree.get(kind, unit) if kind else None
        return f"{node.name} ({unit})" if node is not None and node.name else unit

    def show(
        request: Request,
        me: Principal,
        *,
        after: str | None = None,
        status: int = 200,
        done: str | None = None,
        error: str | None = None,
        secret: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> HTMLResponse:
        users = app.accounts.page_users(after=after, limit=PAGE_SIZE)
        ids = [u.id for u in users]
        return app.render(
            request,
            me,
            "users.html",
            status=status,
            users=users,
            links=app.accounts.links_of(ids),
            sessions=app.accounts.session_counts(ids),
            tokens=app.accounts.list_tokens(limit=200),
            now=app.rt.store.clock(),
            roles=ROLES,
            role_unit=ROLE_UNIT,
            units={kind: app.tree.of_kind(kind) for kind in ("region", "district", "store")},
            providers=PROVIDERS,
            unit_label=unit_label,
            next_after=users[-1].login if len(users) == PAGE_SIZE else None,
            after=after,
            done=done,
            error=error,
            secret=secret,
            form=form or {},
        )

    def target(user_id: int) -> User:
        try:
            return app.accounts.get_user(user_id)
        except AccountError:
            raise ConsoleDenied(404, app.t(None, "users.no_such_user")) from None

    def refused(me: Principal, exc: Exception) -> str:
        return app.t(me, "users.refused", reason=str(exc))

    async def form_of(request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != "csrf"}

    @r.get("/users", response_class=HTMLResponse)
    def users_page(request: Request, after: str | None = None, me: Principal = Depends(manage)) -> HTMLResponse:
        if after is not None and len(after) > 128:
            raise ConsoleDenied(400, app.t(me, "error.bad_request"))
        return show(request, me, after=after or None)

    @r.post("/users", response_class=HTMLResponse)
    async def add(request: Request, me: Principal = Depends(manage)) -> HTMLResponse:
        form = await form_of(request)
        login, role, unit = form.get("login", ""), form.get("role", ""), form.get("unit") or None
        platform_only = form.get("platform_only") == "1"

        def do() -> HTMLResponse:
            password = None if platform_only else generate_password()
            try:
                user = app.accounts.add_user(
                    login,
                    role=role,
                    unit=unit,
                    tree=app.tree,
                    display_name=form.get("name") or None,
                    password=password,
                    must_change_password=True,
                    actor=me.login,
                )
            except (AccountError, ScopeError) as exc:
                status = 409 if "taken" in str(exc) else 422
                return show(request, me, status=status, error=refused(me, exc), form=form)
            secret = {"kind": "password", "login": user.login, "value": password} if password else None
            return show(request, me, done=app.t(me, "users.added", login=user.login), secret=secret)

        return await run_in_threadpool(do)

    def act(request: Request, me: Principal, user_id: int, action: str, form: dict[str, str]) -> HTMLResponse:
        user = target(user_id)
        try:
            if action in ("disable", "enable"):
                if action == "disable" and user.id == me.user_id:
                    raise AccountError(app.t(me, "users.not_yourself"))
                app.accounts.set_disabled(user.id, action == "disable", actor=me.login)
                key = "users.disabled_done" if action == "disable" else "users.enabled"
                return show(request, me, done=app.t(me, key, login=user.login))
            if action == "password":
                if user.id == me.user_id:  # their own goes through the password page (it asks the current one)
                    raise AccountError(app.t(me, "users.not_yourself"))
                new = app.accounts.reset_password(user.id, actor=me.login)
                secret = {"kind": "password", "login": user.login, "value": new}
                return show(request, me, done=app.t(me, "users.password_reset", login=user.login), secret=secret)
            if action == "logout":
                n = app.accounts.end_all_sessions(user.id)
                app.audit(me, "user.logout_all", f"user:{user.login}", {"sessions": n})
                return show(request, me, done=app.t(me, "users.logged_out", login=user.login, n=n))
            if action == "tokens":
                days_text = form.get("days", "")
                try:
                    days = float(days_text) if days_text else None
                except ValueError:
                    raise AccountError(app.t(me, "users.bad_days")) from None
                tid, token = app.accounts.create_token(user.id, form.get("name", ""), days, actor=me.login)
                secret = {"kind": "token", "login": user.login, "value": token, "id": str(tid)}
                return show(request, me, done=app.t(me, "users.token_created", login=user.login), secret=secret)
            provider, subject = form.get("provider", ""), form.get("subject", "")
            if action == "link":
                app.accounts.link(user.id, provider, subject, actor=me.login)
            elif not app.accounts.unlink(user.id, provider, subject, actor=me.login):
                raise ConsoleDenied(404, app.t(me, "error.not_found"))
            return show(request, me, done=app.t(me, f"users.{action}ed", login=user.login))
        except AccountError as exc:
            status = 409 if "already linked" in str(exc) else 422
            return show(request, me, status=status, error=refused(me, exc))

    def action_route(action: str) -> None:
        async def endpoint(request: Request, user_id: int, me: Principal = Depends(manage)) -> HTMLResponse:
            form = await form_of(request)
            return await run_in_threadpool(act, request, me, user_id, action, form)

        endpoint.__name__ = f"user_{action}"
        r.add_api_route(f"/users/{{user_id}}/{action}", endpoint, methods=["POST"], response_class=HTMLResponse)

    for action in ACTIONS:
        action_route(action)

    @r.post("/users/tokens/{token_id}/revoke", response_class=HTMLResponse)
    async def revoke(request: Request, token_id: int, me: Principal = Depends(manage)) -> HTMLResponse:
        def do() -> HTMLResponse:
            if not app.accounts.revoke_token(token_id, actor=me.login):
                raise ConsoleDenied(404, app.t(me, "users.no_such_token"))
            return show(request, me, done=app.t(me, "users.token_revoked_done", id=token_id))

        return await run_in_threadpool(do)

    return r
