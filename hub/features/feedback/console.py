"""The feedback feature's pages in the web console: the case board with live SLA clocks, the case
page with its actions, the JSON API, exports, two overview tiles and the customer page's panel.

Routes (all under ``/console``, ``include_in_schema=False``)::

    GET  /cases                     board: filters, SLA counts, rows with a live clock, one-tap ack
    GET  /cases/live                the board's counts and rows (htmx refresh on ``cx:cases``)
    GET  /cases.csv  /cases.xlsx    the board's cases as a file (data.export; audited)
    GET  /cases/{id}                one case: touchpoints, the customer's history, trail, actions
    POST /cases/{id}/{action}       ack / resolve / reopen / not_negative / assign / note (cases.act)
    GET  /api/cases  /api/cases/{id}          the same as JSON
    POST /api/cases/{id}/{action}             the actions for scripts (API tokens)

Every read is scoped with the principal (a store manager of S002 never reads a case of S001, by
filter, guessed id or export); every action goes through :class:`CaseService`, which writes the
case's trail and the live feed row in the action's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from hub.console.app import PREFIX, ConsoleApp, ConsoleDenied, wants_json
from hub.console.export import export_response
from hub.console.scope import ROLE_PERMISSIONS, Principal
from hub.features.feedback.cases import TRANSITIONS, CaseNotFound, CaseService
from hub.features.feedback.console_query import (
    SEVERITIES,
    SLA_STATES,
    STATES,
    CaseFilters,
    FilterError,
    SlaWindows,
    board_page,
    cursor_of,
    iter_cases,
    parse_filters,
    sla_counts,
    top_topics,
)
from hub.features.feedback.render import channel_label
from hub.features.feedback.schema import cases
from hub.privacy import mask_text
from hub.store.schema import touchpoints

#: the actions of the case page; the state machine's own besides assign and note
ACTIONS = ("ack", "resolve", "reopen", "not_negative", "assign", "note")
#: what the case page may say after an action (``?done=``)
DONE_KEYS = frozenset(
    f"feedback.done.{k}" for k in ("ack", "resolve", "reopen", "not_negative", "assign", "unassign", "note", "nothing")
)
NOTE_MAX = 2000
HISTORY = 20


class CaseConsole:
    """The console's view of the case service: scoped reads, rows for pages and JSON, actions."""

    def __init__(self, app: ConsoleApp, service: CaseService):
        self.app = app
        self.service = service
        self.windows = SlaWindows.of(service.cfg)
        tagger = service.detector.tagger
        self.topics: dict[str, str] = {tid: t.name for tid, t in tagger.topics.items()} if tagger else {}

    # -- reading ---------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.service.clock()

    def t(self, me: Principal | None, key: str, **values: Any) -> str:
        return self.app.t(me, key, **values)

    def filters(self, me: Principal, params: Mapping[str, str]) -> CaseFilters:
        try:
            return parse_filters(params, self.app.tree, me, self.topics)
        except FilterError as exc:
            raise ConsoleDenied(exc.status, self.t(me, exc.key, **exc.values)) from None

    def board(self, me: Principal, f: CaseFilters) -> dict[str, Any]:
        now = self.now()
        with self.service.store.connect() as conn:
            rows, nxt = board_page(conn, me, f, self.app.tree, self.windows, now)
            counts = sla_counts(conn, me, f, self.app.tree, self.windows, now)
        return {"rows": [self.row(r, now) for r in rows], "next": nxt, "counts": counts, "now": now}

    def row(self, r: Mapping[Any, Any], now: datetime) -> dict[str, Any]:
        """What the board and the API show of one case (masked when the case opened)."""
        doc = r["doc"] or {}
        s = doc.get("summary") or {}
        tags = doc.get("topics") or []
        bad = [t for t in tags if t.get("polarity") == "negative"]
        return {
            "id": r["id"],
            "status": r["status"],
            "severity": r["severity"],
            "store": r["store"],
            "store_name": self.app.tree.store_name(r["store"]) or s.get("store_name") or "",
            "opened_at": r["opened_at"],
            "ack_due_at": r["ack_due_at"],
            "resolve_due_at": r["resolve_due_at"],
            "acknowledged_at": r["acknowledged_at"],
            "acknowledged_by": r["acknowledged_by"],
            "resolved_at": r["resolved_at"],
            "resolved_by": r["resolved_by"],
            "why": doc.get("why") or "",
            "excerpt": mask_text(str(s.get("text") or "")),
            "customer": s.get("customer") or "",
            "rating": s.get("rating"),
            "rating_scale": s.get("rating_scale"),
            "topics": [{"id": t.get("topic"), "name": t.get("name") or t.get("topic")} for t in bad],
            "assignee": doc.get("assignee"),
            "touchpoints": r["touchpoints"],
            "level": r["level"],
            "clock": self.windows.clock(r, now),
        }

    def load(self, me: Principal, raw_id: str) -> dict[str, Any]:
        """One case in ``me``'s scope: 404 for no such case, 403 for another store's."""
        if not raw_id.isdigit() or len(raw_id) > 18:
            raise ConsoleDenied(404, self.t(me, "feedback.error.no_case"))
        try:
            case = self.service.get(int(raw_id))
        except CaseNotFound:
            raise ConsoleDenied(404, self.t(me, "feedback.error.no_case")) from None
        if not me.sees_store(case["store"]):
            raise ConsoleDenied(403, self.t(me, "error.forbidden"))
        return case

    def detail(self, me: Principal, case: dict[str, Any]) -> dict[str, Any]:
        """The case page's facts: its touchpoints, the customer's history in scope, the trail."""
        now = self.now()
        view = self.row(case, now)
        own = list(case["touchpoint_ids"])
        with self.service.store.connect() as conn:
            mine = conn.execute(
                select(touchpoints.c.id, touchpoints.c.occurred_at, touchpoints.c.store, touchpoints.c.doc)
                .where(touchpoints.c.id.in_(own[:50]))
                .order_by(touchpoints.c.occurred_at)
            ).mappings()
            case_tps = [self.touchpoint(t, me.locale) for t in mine]
            history: list[dict[str, Any]] = []
            others: list[dict[str, Any]] = []
            cid = case["customer_id"]
            if cid:
                tq = (
                    select(touchpoints.c.id, touchpoints.c.occurred_at, touchpoints.c.store, touchpoints.c.doc)
                    .where(touchpoints.c.customer_id == cid, me.clause(touchpoints.c.store))
                    .order_by(touchpoints.c.occurred_at.desc())
                    .limit(HISTORY + len(own))
                )
                found = conn.execute(tq).mappings()
                history = [self.touchpoint(t, me.locale) for t in found if t["id"] not in own][:HISTORY]
                cq = (
                    select(cases)
                    .where(cases.c.customer_id == cid, cases.c.id != case["id"], me.clause(cases.c.store))
                    .order_by(cases.c.opened_at.desc())
                    .limit(HISTORY)
                )
                others = [self.row(r, now) for r in conn.execute(cq).mappings()]
        events = [
            {
                "at": e["at"],
                "action": e["action"],
                "actor": e["actor"],
                "via": e["via"],
                "note": mask_text(e["note"]) if e["note"] else None,
                "to": (e["detail"] or {}).get("to") if e["action"] == "assign" else None,
            }
            for e in case["events"]
        ]
        s = case["doc"].get("summary") or {}
        return {
            "case": view,
            "summary": s,
            "reasons": case["doc"].get("reasons") or [],
            "customer_id": case["customer_id"],
            "touchpoints": case_tps,
            "history": history,
            "other_cases": others,
            "events": events,
            "actions": self.actions_for(me, case),
        }

    def touchpoint(self, t: Mapping[Any, Any], locale: str) -> dict[str, Any]:
        doc = t["doc"] or {}
        fb = doc.get("feedback") or {}
        where = {"channel": doc.get("channel"), "kind": doc.get("kind")}
        return {
            "id": t["id"],
            "occurred_at": t["occurred_at"],
            "store": t["store"],
            "store_name": self.app.tree.store_name(t["store"]),
            "kind": doc.get("kind"),
            "channel": channel_label(where) if locale == "zh" else (doc.get("channel") or doc.get("kind")),
            "rating": fb.get("rating"),
            "rating_scale": fb.get("rating_scale"),
            "nps": fb.get("nps"),
            "text": mask_text(str(fb.get("text") or ""))[:2000],
        }

    def actions_for(self, me: Principal, case: Mapping[str, Any]) -> list[str]:
        if not me.can("cases.act"):
            return []
        return [a for a in ("ack", "resolve", "not_negative", "reopen") if case["status"] in TRANSITIONS[a][0]]

    def assignees(self, store: str | None) -> list[tuple[str, str]]:
        """(login, display name) of the enabled console users who may act on ``store``'s cases."""
        out = []
        for user in self.app.accounts.list_users():
            if user.disabled or "cases.act" not in ROLE_PERMISSIONS.get(user.role, frozenset()):
                continue
            p = self.app.principal_of(user, via="session")
            if p.sees_store(store):
                out.append((user.login, user.display_name))
        return out

    # -- acting ----------------------------------------------------------------------------
    def act(self, me: Principal, raw_id: str, action: str, form: Mapping[str, str]) -> tuple[dict[str, Any], str]:
        """Do ``action`` on a case in scope; the case afterwards and the message key for the page."""
        if action not in ACTIONS:
            raise ConsoleDenied(404, self.t(me, "feedback.error.no_action"))
        case = self.load(me, raw_id)
        cid = int(case["id"])
        note = " ".join((form.get("note") or "").split()) if action != "note" else (form.get("note") or "").strip()
        if len(note) > NOTE_MAX:
            raise ConsoleDenied(400, self.t(me, "feedback.error.note_long", max=NOTE_MAX))
        if action == "note":
            if not note:
                raise ConsoleDenied(400, self.t(me, "feedback.error.note_empty"))
            self.service.add_note(cid, note, actor=me.login, via="console")
            key = "feedback.done.note"
        elif action == "assign":
            to = (form.get("assignee") or "").strip()
            if to and to not in {login for login, _ in self.assignees(case["store"])}:
                raise ConsoleDenied(400, self.t(me, "feedback.error.bad_assignee", value=to[:64]))
            self.service.assign(cid, to or None, actor=me.login, via="console", note=note or None)
            key = "feedback.done.assign" if to else "feedback.done.unassign"
        else:
            result = self.service.transition(cid, action, actor=me.login, via="console", note=note or None)
            key = f"feedback.done.{action}" if result.changed else "feedback.done.nothing"
        self.app.audit(me, f"case.{action}", f"case:{cid}", {"case": cid}, store=case["store"])
        return self.load(me, raw_id), key


def fragment(app: ConsoleApp, me: Principal, template: str, **ctx: Any) -> str:
    """A template rendered without the layout (tiles, panels), in ``me``'s language."""
    return app.env.get_template(template).render(
        me=me,
        t=lambda key, **kw: app.catalogue.t(me.locale, key, **kw),
        locale=me.locale,
        prefix=PREFIX,
        csrf=me.csrf,
        **ctx,
    )


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_iso(data), status_code=status)


def _params(request: Request) -> dict[str, str]:
    """The query's parameters; a repeated one is refused rather than silently picked."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in out:
            raise ConsoleDenied(400, f"{key[:32]}: once only")
        out[key] = value
    return out


def _choices(cc: CaseConsole, me: Principal) -> dict[str, Any]:
    """The units and topics a filter may offer this user (their scope only)."""
    tree = cc.app.tree

    def visible(kind: str) -> list[tuple[str, str]]:
        units = []
        for u in tree.of_kind(kind):
            stores = tree.stores_under(kind, u.id)
            if me.stores is None or stores & me.stores:
                units.append((u.id, u.name or u.id))
        return units

    return {
        "stores": visible("store"),
        "districts": visible("district"),
        "regions": visible("region"),
        "topics": sorted(cc.topics.items(), key=lambda kv: kv[1]),
        "severities": SEVERITIES,
        "states": list(STATES),
        "sla_states": SLA_STATES,
    }


EXPORT_COLUMNS = (
    ("id", "feedback.col.id"),
    ("status", "feedback.col.status"),
    ("severity", "feedback.col.severity"),
    ("store", "common.store"),
    ("store_name", "feedback.col.store_name"),
    ("opened_at", "feedback.col.opened_at"),
    ("sla", "feedback.col.sla"),
    ("deadline", "feedback.col.deadline"),
    ("acknowledged_at", "feedback.col.acknowledged_at"),
    ("acknowledged_by", "feedback.col.acknowledged_by"),
    ("resolved_at", "feedback.col.resolved_at"),
    ("resolved_by", "feedback.col.resolved_by"),
    ("assignee", "feedback.col.assignee"),
    ("topics", "feedback.col.topics"),
    ("why", "feedback.col.why"),
    ("excerpt", "feedback.col.excerpt"),
    ("customer", "feedback.col.customer"),
)


def build_router(app: ConsoleApp, service: CaseService) -> APIRouter:
    cc = CaseConsole(app, service)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    read = app.guard("data.read")
    act = app.guard("cases.act")
    export = app.guard("data.export")

    def board_ctx(me: Principal, f: CaseFilters) -> dict[str, Any]:
        here = f.params()
        if f.after is not None:
            here["after"] = cursor_of(*f.after)
        return {**cc.board(me, f), "f": f, "here": urlencode(here)}

    @router.get("/cases", response_class=HTMLResponse)
    def board(request: Request, me: Principal = Depends(read)) -> HTMLResponse:
        f = cc.filters(me, _params(request))
        return app.render(request, me, "feedback_cases.html", **board_ctx(me, f), **_choices(cc, me))

    @router.get("/cases/live", response_class=HTMLResponse)
    def board_live(request: Request, me: Principal = Depends(read)) -> HTMLResponse:
        f = cc.filters(me, _params(request))
        return app.render(request, me, "feedback_cases_live.html", **board_ctx(me, f))

    def export_file(request: Request, me: Principal, fmt: str) -> Response:
        f = cc.filters(me, _params(request))
        now = cc.now()

        def rows() -> Iterator[dict[str, Any]]:
            with service.store.connect() as conn:
                for r in iter_cases(conn, me, f, app.tree, cc.windows, now):
                    v = cc.row(r, now)
                    clock = v["clock"] or {}
                    v["sla"] = cc.t(me, f"feedback.sla.{clock['state']}") if clock else ""
                    v["deadline"] = clock.get("deadline")
                    v["status"] = cc.t(me, f"feedback.status.{v['status']}")
                    v["severity"] = cc.t(me, f"feedback.severity.{v['severity']}")
                    v["topics"] = "、".join(t["name"] for t in v["topics"])
                    yield v

        columns = [(key, cc.t(me, label)) for key, label in EXPORT_COLUMNS]
        stamp = app.localtime(now, "%Y%m%d-%H%M")
        return export_response(
            app, me, fmt, f"cases-{stamp}", columns, rows(), action="export.cases", detail={"filters": f.as_dict()}
        )

    @router.get("/cases.csv")
    def export_csv(request: Request, me: Principal = Depends(export)) -> Response:
        return export_file(request, me, "csv")

    @router.get("/cases.xlsx")
    def export_xlsx(request: Request, me: Principal = Depends(export)) -> Response:
        return export_file(request, me, "xlsx")

    @router.get("/api/cases")
    def api_cases(request: Request, me: Principal = Depends(read)) -> JSONResponse:
        f = cc.filters(me, _params(request))
        data = cc.board(me, f)
        return _json({"cases": data["rows"], "next": data["next"], "counts": data["counts"], "filters": f.params()})

    @router.get("/api/cases/{case_id}")
    def api_case(case_id: str, me: Principal = Depends(read)) -> JSONResponse:
        return _json(cc.detail(me, cc.load(me, case_id)))

    @router.get("/cases/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: str, me: Principal = Depends(read)) -> HTMLResponse:
        case = cc.load(me, case_id)
        d = cc.detail(me, case)
        done = request.query_params.get("done", "")
        message = cc.t(me, done) if done in DONE_KEYS else None
        assignees = cc.assignees(case["store"]) if me.can("cases.act") else []
        return app.render(request, me, "feedback_case.html", **d, message=message, assignees=assignees)

    async def do_action(request: Request, case_id: str, action: str, me: Principal) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                raise ConsoleDenied(400, cc.t(me, "error.bad_request")) from None
            if not isinstance(body, dict):
                raise ConsoleDenied(400, cc.t(me, "error.bad_request"))
            form = {k: str(v) for k, v in body.items() if isinstance(v, str | int)}
        else:
            data = await request.form()
            form = {k: v for k, v in data.items() if isinstance(v, str)}
        case, key = await run_in_threadpool(cc.act, me, case_id, action, form)
        if wants_json(request):
            return _json({"case": cc.row(case, cc.now()), "message": cc.t(me, key)})
        if request.headers.get("hx-request") and request.headers.get("hx-target", "").startswith("case-row-"):
            return app.render(request, me, "feedback_case_row.html", c=cc.row(case, cc.now()), message=cc.t(me, key))
        return RedirectResponse(f"{PREFIX}/cases/{case['id']}?done={key}", status_code=303)

    @router.post("/cases/{case_id}/{action}")
    async def case_action(request: Request, case_id: str, action: str, me: Principal = Depends(act)) -> Response:
        return await do_action(request, case_id, action, me)

    @router.post("/api/cases/{case_id}/{action}")
    async def api_case_action(request: Request, case_id: str, action: str, me: Principal = Depends(act)) -> Response:
        return await do_action(request, case_id, action, me)

    return router


# ------------------------------------------------------------------------ tiles and panels


def sla_tile(app: ConsoleApp, me: Principal, service: CaseService) -> str:
    """Open cases in ``me``'s scope by SLA state (a ring chart and links to the board)."""
    with service.store.connect() as conn:
        counts = sla_counts(conn, me, CaseFilters(), app.tree, SlaWindows.of(service.cfg), service.clock())
    label = {s: app.t(me, f"feedback.sla.{s}") for s in SLA_STATES}
    colours = {"on_time": "#16a34a", "due_soon": "#d97706", "breached": "#dc2626"}
    chart = {
        "tooltip": {"trigger": "item"},
        "series": [
            {
                "type": "pie",
                "radius": ["45%", "70%"],
                "data": [
                    {"name": label[s], "value": counts[s], "itemStyle": {"color": colours[s]}} for s in SLA_STATES
                ],
            }
        ],
    }
    return fragment(app, me, "feedback_tile_sla.html", counts=counts, label=label, chart=chart)


def topics_tile(app: ConsoleApp, me: Principal, service: CaseService) -> str:
    """The negative topics of the cases opened in the last seven days, in ``me``'s scope."""
    now = service.clock()
    with service.store.connect() as conn:
        top = top_topics(conn, me, now - timedelta(days=7))
    tagger = service.detector.tagger
    names = {tid: t.name for tid, t in tagger.topics.items()} if tagger else {}
    items = [(tid, names.get(tid, tid), n) for tid, n in top]
    chart = {
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 90, "right": 16, "top": 8, "bottom": 24},
        "xAxis": {"type": "value", "minInterval": 1},
        "yAxis": {"type": "category", "inverse": True, "data": [name for _, name, _ in items]},
        "series": [{"type": "bar", "data": [n for _, _, n in items], "itemStyle": {"color": "#dc2626"}}],
    }
    return fragment(app, me, "feedback_tile_topics.html", items=items, chart=chart)


def customer_panel(app: ConsoleApp, me: Principal, customer_id: str, service: CaseService) -> str:
    """The customer's cases at the stores ``me`` sees, newest first."""
    if not me.can("data.read"):
        return ""
    cc = CaseConsole(app, service)
    now = service.clock()
    q = (
        select(cases)
        .where(cases.c.customer_id == customer_id, me.clause(cases.c.store))
        .order_by(cases.c.opened_at.desc())
        .limit(50)
    )
    with service.store.connect() as conn:
        rows = [cc.row(r, now) for r in conn.execute(q).mappings()]
    return fragment(app, me, "feedback_customer_panel.html", rows=rows)
