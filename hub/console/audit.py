"""Console pages: the audit log (who did what, when, to which object), newest first.

``GET /console/audit`` (audit.read): filters ``actor`` (exact login), ``action`` (exact, or a
prefix ending in ``.``: ``export.`` is every export), ``since`` / ``until`` (dates, ``YYYY-MM-DD``
in the config's timezone, both days included, at most a year apart); keyset pages of at most
:data:`MAX_PAGE` rows (``before``: the last id of the page). ``GET /console/api/audit`` answers the
same as JSON. Rows are scoped like every read: a role bound to a unit sees the rows of its stores.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from hub.console import MAX_ROW_ID, NavItem
from hub.console.schema import console_audit
from hub.console.scope import Principal

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp

PAGE = 50
MAX_PAGE = 200
MAX_SPAN = timedelta(days=366)


def _day(app: ConsoleApp, me: Principal, name: str, value: str) -> date | None:
    from hub.console.app import ConsoleDenied

    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConsoleDenied(400, app.t(me, "auditlog.bad_date", field=name, value=value[:32])) from None


def audit_query(
    app: ConsoleApp,
    me: Principal,
    *,
    actor: str,
    action: str,
    since: str,
    until: str,
    before: int | None,
    limit: int,
) -> Any:
    """The page's query (validated: a bad date or range is a 400)."""
    from hub.console.app import ConsoleDenied

    t = console_audit
    q = select(t)
    if not me.hq:  # a unit's role reads the rows of its stores only
        q = q.where(me.clause(t.c.store))
    if actor:
        q = q.where(t.c.actor == actor)
    if action:
        if action.endswith("."):
            q = q.where(t.c.action.startswith(action, autoescape=True))
        else:
            q = q.where(t.c.action == action)
    start, end = _day(app, me, "since", since), _day(app, me, "until", until)
    if start and end and end < start:
        raise ConsoleDenied(400, app.t(me, "auditlog.bad_range"))
    if start and end and end - start > MAX_SPAN:
        raise ConsoleDenied(400, app.t(me, "auditlog.too_long"))
    if start:
        q = q.where(t.c.at >= datetime.combine(start, time(), app.zone).astimezone(UTC))
    if end:
        q = q.where(t.c.at < datetime.combine(end + timedelta(days=1), time(), app.zone).astimezone(UTC))
    if before:
        q = q.where(t.c.id < before)
    return q.order_by(t.c.id.desc()).limit(limit + 1)


def router(app: ConsoleApp) -> APIRouter:
    from hub.console.overview import add_nav_once

    r = APIRouter(prefix="/console", include_in_schema=False)
    add_nav_once(app, NavItem("nav.audit", "/audit", "audit.read", 90))

    def read(
        me: Principal, actor: str, action: str, since: str, until: str, before: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        q = audit_query(app, me, actor=actor, action=action, since=since, until=until, before=before, limit=limit)
        with app.rt.store.connect() as conn:
            rows = [dict(x) for x in conn.execute(q).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["id"] if more and rows else None)

    @r.get("/audit", response_class=HTMLResponse)
    def audit_page(
        request: Request,
        actor: str = Query("", max_length=128),
        action: str = Query("", max_length=64),
        since: str = Query("", max_length=10),
        until: str = Query("", max_length=10),
        before: int | None = Query(None, ge=1, le=MAX_ROW_ID),
        limit: int = Query(PAGE, ge=1, le=MAX_PAGE),
        me: Principal = Depends(app.guard("audit.read")),
    ) -> HTMLResponse:
        rows, next_before = read(me, actor.strip(), action.strip(), since, until, before, limit)
        return app.render(
            request,
            me,
            "audit.html",
            rows=rows,
            next_before=next_before,
            actor=actor,
            action=action,
            since=since,
            until=until,
            limit=limit,
        )

    @r.get("/api/audit")
    def audit_json(
        actor: str = Query("", max_length=128),
        action: str = Query("", max_length=64),
        since: str = Query("", max_length=10),
        until: str = Query("", max_length=10),
        before: int | None = Query(None, ge=1, le=MAX_ROW_ID),
        limit: int = Query(PAGE, ge=1, le=MAX_PAGE),
        me: Principal = Depends(app.guard("audit.read")),
    ) -> dict[str, Any]:
        rows, next_before = read(me, actor.strip(), action.strip(), since, until, before, limit)
        for row in rows:
            row["at"] = row["at"].isoformat()
        return {"rows": rows, "next_before": next_before}

    return r
