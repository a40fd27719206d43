"""Console pages: the admins' forget page (the right to be forgotten; docs/privacy.md).

``GET /console/privacy`` (permission ``privacy.forget``): a form, by phone number, platform id
(openid, with its app id when known) or customer id. ``POST /console/privacy/preview``: a dry run
(:func:`hub.forget.forget` rolled back) shows what would go, per table, and asks for confirmation;
``POST /console/privacy/forget`` with ``confirm=yes`` forgets, audited (``privacy.forget``: who,
counts, a reference; never the phone number or the id). Values travel in POST bodies only, never
in a URL (no access log or browser history keeps them). A malformed phone number or an unknown
customer is a 400 with the reason; a preview is audited too (``privacy.preview``: a lookup of a
person is itself worth recording).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hub.console import NavItem
from hub.console.scope import Principal
from hub.forget import ForgetError, ForgetReport, Lookup, forget_in

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp

BY = ("phone", "openid", "customer")
MAX_VALUE = 128


def _lookup(app: ConsoleApp, me: Principal, form: dict[str, str]) -> Lookup:
    from hub.console.app import ConsoleDenied

    by = form.get("by", "")
    value = form.get("value", "").strip()
    scope = form.get("scope", "").strip() if by == "openid" else ""
    if by not in BY:
        raise ConsoleDenied(400, app.t(me, "privacy.error.by"))
    if not value or len(value) > MAX_VALUE or len(scope) > MAX_VALUE:
        raise ConsoleDenied(400, app.t(me, "privacy.error.value", n=MAX_VALUE))
    try:
        return Lookup(**{by: value}, scope=scope or None)
    except ForgetError as exc:
        raise ConsoleDenied(400, app.t(me, f"privacy.error.{exc.code}")) from None


def _rows(report: ForgetReport) -> list[dict[str, Any]]:
    out = []
    for key, n in sorted(report.counts.items()):
        table, _, action = key.rpartition(".")
        out.append({"table": table or key, "action": action if table else "", "n": n})
    return out


def router(app: ConsoleApp) -> APIRouter:
    r = APIRouter(prefix="/console", include_in_schema=False)
    guard = app.guard("privacy.forget")
    item = NavItem("nav.privacy", "/privacy", "privacy.forget", 95)
    if item not in app.registry.nav:  # a second web app on the same runtime (tests) adds no twin
        app.registry.add_nav(item)

    async def form_of(request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def run(me: Principal, lookup: Lookup, *, dry_run: bool) -> ForgetReport:
        from hub.console.app import ConsoleDenied

        try:
            report = forget_in(app.rt, lookup, actor=me.login, via="console", dry_run=dry_run)
        except ForgetError as exc:
            raise ConsoleDenied(400, app.t(me, f"privacy.error.{exc.code}")) from None
        if dry_run:
            app.audit(me, "privacy.preview", None, {"by": lookup.by, "customers": report.customers})
        return report

    @r.get("/privacy", response_class=HTMLResponse)
    def page(request: Request, me: Principal = Depends(guard)) -> HTMLResponse:
        return app.render(request, me, "privacy.html", form={"by": "phone"}, preview=None, done=None)

    @r.post("/privacy/preview", response_class=HTMLResponse)
    async def preview(request: Request, me: Principal = Depends(guard)) -> HTMLResponse:
        form = await form_of(request)
        lookup = _lookup(app, me, form)
        report = await run_in_threadpool(run, me, lookup, dry_run=True)
        shown = {"by": form.get("by", ""), "value": form.get("value", ""), "scope": form.get("scope", "")}
        return app.render(request, me, "privacy.html", form=shown, preview=report, rows=_rows(report), done=None)

    @r.post("/privacy/forget", response_class=HTMLResponse)
    async def forget(request: Request, me: Principal = Depends(guard)) -> HTMLResponse:
        from hub.console.app import ConsoleDenied

        form = await form_of(request)
        lookup = _lookup(app, me, form)
        if form.get("confirm") != "yes":
            raise ConsoleDenied(400, app.t(me, "privacy.error.confirm"))
        report = await run_in_threadpool(run, me, lookup, dry_run=False)
        return app.render(
            request, me, "privacy.html", form={"by": "phone"}, preview=None, rows=_rows(report), done=report
        )

    return r
