"""Console pages: connectors, the outbox and the quarantine: state, lag, errors, replay.

- ``GET /console/connectors`` (ops.read): per source its kind, push or pull, enabled, last run and
  how it ended, lag (the newest touchpoint's ``occurred_at`` against now; a pull source's cursor
  age), error rate (quarantined / received in the last 24 hours), open quarantine, pause state;
  per destination the outbox rows queued, retrying and dead.
- ``POST /console/connectors/{source}/pause`` and ``/resume`` (ops.act): the flag in the store's
  kv table that every process's scheduler reads before a scheduled sync (:func:`hub.sync.paused`).
- ``POST /console/connectors/{source}/replay`` (ops.act): the source's open quarantine through the
  current mapping (:func:`hub.replay.replay_quarantined`).
- ``POST /console/destinations/{name}/replay-dead`` (ops.act): the destination's dead messages due
  again (:func:`hub.outbox.admin.retry`, same idempotency keys).
- ``GET /console/quarantine`` (ops.read): the records with reason, stage and masked payload, one
  replay button each (``POST /console/quarantine/{id}/replay``); ``/console/quarantine.csv`` and
  ``.xlsx`` export the list (masked, audited).

Every action is audited and published to the live feed (topics ``sources``, ``quarantine``,
``outbox``). Connectors and the quarantine are HQ's: the roles with ``ops.read`` are HQ-wide.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from hub.console import MAX_ROW_ID, NavItem
from hub.console.accounts import audit
from hub.console.live import publish
from hub.console.scope import Principal
from hub.privacy import mask_payload
from hub.sdk.connector import PullSource, PushSource
from hub.store.schema import inbox, outbox, quarantine, source_state, touchpoints

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp

log = logging.getLogger("cxhub.console")

WINDOW = timedelta(hours=24)
PAGE = 50
MAX_PAGE = 200
QUARANTINE_STATUSES = ("open", "replayed")


def _now(app: ConsoleApp) -> datetime:
    return app.rt.store.clock()


def _record(
    app: ConsoleApp,
    me: Principal,
    action: str,
    target: str,
    detail: Mapping[str, Any],
    topic: str,
    **data: Any,
) -> None:
    """The audit row and the live feed's row of one action, in one transaction."""
    with app.rt.store.begin() as conn:
        now = _now(app)
        audit(conn, now, me.login, action, target, detail)
        publish(conn, now, topic, ref=target, **data)


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def source_rows(app: ConsoleApp) -> list[dict[str, Any]]:
    """One row per configured source, for the connectors page (one small query per source: a
    deployment has tens of sources, each query reads an index)."""
    from hub.sync import last_run, paused

    rt = app.rt
    now = _now(app)
    since = now - WINDOW
    # the kv flags first: on SQLite a second connection would wait for the one below
    pulls = {n for n, spec in rt.config.sources.items() if issubclass(spec.cls, PullSource)}
    pauses = {n: paused(rt.store, n) for n in pulls}
    lasts = {n: last_run(rt.store, n) for n in pulls}
    with rt.store.connect() as conn:
        return _source_rows(app, conn, now, since, pauses, lasts)


def _source_rows(
    app: ConsoleApp,
    conn: Connection,
    now: datetime,
    since: datetime,
    pauses: Mapping[str, dict[str, Any] | None],
    lasts: Mapping[str, dict[str, Any] | None],
) -> list[dict[str, Any]]:
    rt = app.rt
    open_q: dict[str, int] = dict(
        conn.execute(
            select(quarantine.c.source, func.count()).where(quarantine.c.status == "open").group_by(quarantine.c.source)
        ).all()
    )
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(rt.config.sources.items()):
        pull = issubclass(spec.cls, PullSource)
        newest = conn.execute(select(func.max(touchpoints.c.occurred_at)).where(touchpoints.c.source == name)).scalar()
        received = int(
            conn.execute(select(func.count()).where(inbox.c.source == name, inbox.c.received_at >= since)).scalar_one()
        )
        bad = int(
            conn.execute(
                select(func.count()).where(
                    inbox.c.source == name, inbox.c.received_at >= since, inbox.c.status == "quarantined"
                )
            ).scalar_one()
        )
        cursor_at = None
        last: dict[str, Any] | None = None
        if pull:
            cursor_at = conn.execute(select(source_state.c.updated_at).where(source_state.c.source == name)).scalar()
            last = lasts.get(name)
        else:
            newest_in = conn.execute(select(func.max(inbox.c.received_at)).where(inbox.c.source == name)).scalar()
            last = {"at": newest_in.isoformat(), "ok": True, "outcome": ""} if newest_in else None
        sch = spec.config.schedule
        rows.append(
            {
                "name": name,
                "kind": getattr(spec.cls, "kind", spec.config.connector),
                "mode": "pull" if pull else ("push" if issubclass(spec.cls, PushSource) else "other"),
                "enabled": spec.config.enabled,
                "schedule": (f"every {sch.every:g}s" if sch.every else f"cron {sch.cron}") if sch else "",
                "last_at": datetime.fromisoformat(last["at"]) if last and last.get("at") else None,
                "last_ok": bool(last.get("ok")) if last else None,
                "last_outcome": str(last.get("outcome") or "") if last else "",
                "lag": _age(now, newest),
                "cursor_age": _age(now, cursor_at),
                "received": received,
                "quarantined_24h": bad,
                "error_rate": (bad / received) if received else None,
                "open_quarantine": int(open_q.get(name, 0)),
                "paused": pauses.get(name) if pull else None,
            }
        )
    return rows


def destination_rows(app: ConsoleApp, conn: Connection) -> list[dict[str, Any]]:
    """Per destination (configured, or with rows): queued (pending, sending), retrying (failed), dead."""
    counts: dict[str, dict[str, int]] = {}
    q = (
        select(outbox.c.destination, outbox.c.status, func.count())
        .where(outbox.c.status.in_(("pending", "sending", "failed", "dead")))
        .group_by(outbox.c.destination, outbox.c.status)
    )
    for dest, status, n in conn.execute(q):
        counts.setdefault(dest, {})[status] = int(n)
    names = sorted(set(app.rt.config.destinations) | set(counts))
    out = []
    for name in names:
        c = counts.get(name, {})
        spec = app.rt.config.destinations.get(name)
        out.append(
            {
                "name": name,
                "kind": spec.config.connector if spec else "",
                "enabled": spec.config.enabled if spec else False,
                "queued": c.get("pending", 0) + c.get("sending", 0),
                "retrying": c.get("failed", 0),
                "dead": c.get("dead", 0),
            }
        )
    return out


def _pretty(payload: Any) -> str:
    return orjson.dumps(mask_payload(payload), option=orjson.OPT_INDENT_2).decode()


def _limit(value: int) -> int:
    from hub.console.app import ConsoleDenied

    if not 1 <= value <= MAX_PAGE:
        raise ConsoleDenied(400, f"limit: 1 to {MAX_PAGE}")
    return value


def _quarantine_query(source: str | None, status: str | None) -> Any:
    q = select(quarantine)
    if source:
        q = q.where(quarantine.c.source == source)
    if status:
        q = q.where(quarantine.c.status == status)
    return q


def router(app: ConsoleApp) -> APIRouter:
    from hub.console.app import ConsoleDenied

    r = APIRouter(prefix="/console", include_in_schema=False)
    from hub.console.overview import add_nav_once, install_tiles

    add_nav_once(app, NavItem("ops.nav.connectors", "/connectors", "ops.read", 80))
    add_nav_once(app, NavItem("ops.nav.quarantine", "/quarantine", "ops.read", 81))
    install_tiles(app)

    def back(request: Request, to: str) -> Response:
        """After an action: htmx reloads the page, a plain form follows a redirect."""
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Refresh": "true"})
        return RedirectResponse(f"/console{to}", status_code=303)

    def pull_source(me: Principal, name: str) -> str:
        spec = app.rt.config.sources.get(name)
        if spec is None:
            raise ConsoleDenied(404, app.t(me, "ops.unknown_source", name=name[:64]))
        if not issubclass(spec.cls, PullSource):
            raise ConsoleDenied(400, app.t(me, "ops.not_pull", name=name))
        return name

    @r.get("/connectors", response_class=HTMLResponse)
    def connectors(request: Request, me: Principal = Depends(app.guard("ops.read"))) -> HTMLResponse:
        sources = source_rows(app)
        with app.rt.store.connect() as conn:
            destinations = destination_rows(app, conn)
        return app.render(request, me, "connectors.html", sources=sources, destinations=destinations)

    @r.get("/api/connectors")
    def connectors_json(me: Principal = Depends(app.guard("ops.read"))) -> dict[str, Any]:
        sources = source_rows(app)
        with app.rt.store.connect() as conn:
            destinations = destination_rows(app, conn)
        for s in sources:
            s["last_at"] = s["last_at"].isoformat() if s["last_at"] else None
        return {"sources": sources, "destinations": destinations}

    @r.post("/connectors/{name}/pause")
    def pause(request: Request, name: str, me: Principal = Depends(app.guard("ops.act"))) -> Response:
        from hub.sync import set_paused

        pull_source(me, name)
        set_paused(app.rt.store, name, True, by=me.login, at=_now(app))
        _record(app, me, "source.pause", f"source:{name}", {}, "sources", paused=True)
        return back(request, "/connectors")

    @r.post("/connectors/{name}/resume")
    def resume(request: Request, name: str, me: Principal = Depends(app.guard("ops.act"))) -> Response:
        from hub.sync import set_paused

        pull_source(me, name)
        set_paused(app.rt.store, name, False, by=me.login, at=_now(app))
        _record(app, me, "source.resume", f"source:{name}", {}, "sources", paused=False)
        return back(request, "/connectors")

    @r.post("/connectors/{name}/replay")
    def replay_source(request: Request, name: str, me: Principal = Depends(app.guard("ops.act"))) -> Response:
        from hub.replay import replay_quarantined

        if name not in app.rt.config.sources:
            raise ConsoleDenied(404, app.t(me, "ops.unknown_source", name=name[:64]))
        result = replay_quarantined(app.rt.ingestor, app.rt.mappings, source=name)
        _record(app, me, "quarantine.replay", f"source:{name}", result.summary(), "quarantine", **result.summary())
        return back(request, "/connectors")

    @r.post("/destinations/{name}/replay-dead")
    def replay_dead(request: Request, name: str, me: Principal = Depends(app.guard("ops.act"))) -> Response:
        from hub.outbox.admin import retry

        with app.rt.store.connect() as conn:
            known = (
                name in app.rt.config.destinations
                or conn.execute(select(outbox.c.id).where(outbox.c.destination == name).limit(1)).first()
            )
        if not known:
            raise ConsoleDenied(404, app.t(me, "ops.unknown_destination", name=name[:64]))
        n = 0
        with app.rt.store.begin() as conn:
            ids = list(
                conn.execute(
                    select(outbox.c.id).where(outbox.c.destination == name, outbox.c.status == "dead")
                ).scalars()
            )
            for i in range(0, len(ids), 1000):
                n += retry(conn, now=_now(app), ids=ids[i : i + 1000])
            audit(conn, _now(app), me.login, "outbox.replay_dead", f"destination:{name}", {"rows": n})
            publish(conn, _now(app), "outbox", ref=f"destination:{name}", replayed=n)
        return back(request, "/connectors")

    @r.get("/quarantine", response_class=HTMLResponse)
    def quarantine_page(
        request: Request,
        source: str | None = Query(None, max_length=64),
        status: str | None = Query("open", max_length=16),
        before: int | None = Query(None, ge=1, le=MAX_ROW_ID),
        limit: int = Query(PAGE),
        me: Principal = Depends(app.guard("ops.read")),
    ) -> HTMLResponse:
        _limit(limit)
        status = status or None
        if status and status not in QUARANTINE_STATUSES:
            raise ConsoleDenied(400, app.t(me, "ops.bad_status", status=status))
        q = _quarantine_query(source or None, status).order_by(quarantine.c.id.desc()).limit(limit + 1)
        if before:
            q = q.where(quarantine.c.id < before)
        with app.rt.store.connect() as conn:
            rows = [dict(x) for x in conn.execute(q).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        for row in rows:
            row["shown"] = _pretty(row["payload"])
            row["reason"] = mask_payload(row["reason"])
        return app.render(
            request,
            me,
            "quarantine.html",
            rows=rows,
            more=more,
            next_before=rows[-1]["id"] if more and rows else None,
            source=source or "",
            q_status=status or "",  # (``status`` is the response's)
            sources=sorted(app.rt.config.sources),
            statuses=QUARANTINE_STATUSES,
            limit=limit,
        )

    @r.post("/quarantine/{qid}/replay")
    def replay_one(request: Request, qid: int, me: Principal = Depends(app.guard("ops.act"))) -> Response:
        from hub.replay import replay_quarantined

        with app.rt.store.connect() as conn:
            row = conn.execute(select(quarantine.c.status, quarantine.c.source).where(quarantine.c.id == qid)).first()
        if row is None:
            raise ConsoleDenied(404, app.t(me, "error.not_found"))
        if row.status != "open":
            raise ConsoleDenied(409, app.t(me, "ops.already_replayed"))
        result = replay_quarantined(app.rt.ingestor, app.rt.mappings, ids=[qid])
        _record(app, me, "quarantine.replay", f"quarantine:{qid}", result.summary(), "quarantine", **result.summary())
        return back(request, "/quarantine")

    @r.get("/quarantine.{fmt}")
    def quarantine_export(
        fmt: str,
        source: str | None = Query(None, max_length=64),
        status: str | None = Query("open", max_length=16),
        me: Principal = Depends(app.guard("ops.read")),
    ) -> Response:
        from hub.console.export import export_response

        status = status or None
        if status and status not in QUARANTINE_STATUSES:
            raise ConsoleDenied(400, app.t(me, "ops.bad_status", status=status))
        stmt = _quarantine_query(source or None, status).order_by(quarantine.c.id.desc())

        def rows() -> Iterator[dict[str, Any]]:
            from hub.console.export import query_rows

            for row in query_rows(app.rt.store, stmt):
                row["payload"] = mask_payload(row["payload"])
                row["reason"] = mask_payload(row["reason"])
                yield row

        t = lambda key: app.t(me, key)  # noqa: E731
        columns = [
            ("id", "id"),
            ("created_at", t("common.at")),
            ("source", t("ops.source")),
            ("external_id", t("ops.external_id")),
            ("stage", t("ops.stage")),
            ("status", t("ops.status")),
            ("reason", t("ops.reason")),
            ("payload", t("ops.payload")),
        ]
        return export_response(
            app,
            me,
            fmt,
            "quarantine",
            columns,
            rows(),
            action="export.quarantine",
            target=f"source:{source}" if source else "quarantine",
            detail={"status": status or "all"},
        )

    return r
