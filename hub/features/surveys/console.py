"""The console's survey pages (registered by :mod:`hub.features.surveys.console_setup`).

- ``GET /console/surveys`` (data.read): the funnel of a period (eligible -> invited -> sent ->
  opened -> answered), every reason an invitation was not sent with its count, and NPS / CSAT / CES
  per day (ECharts). Each number links to the invitations or answers behind it; a click on a point
  of the trend or a bar of the NPS scores opens the answers of that day / score. Filters: ``from``
  and ``to`` (local dates, default the last 30 days, at most 366), ``store``, ``region``,
  ``district``, ``questionnaire``, ``channel``. It refreshes on the live topic ``surveys``.
- ``GET /console/surveys/responses`` (data.read): the answers, newest first, with ``metric``
  (nps / csat / ces) and ``min`` / ``max``, ``question`` (answered it; ``min`` / ``max`` on a
  scored question), ``limit`` (at most 200) and ``after`` (the next page's cursor). Free texts
  are escaped and masked, customers shown by a masked identity.
- ``GET /console/surveys/responses.csv`` / ``.xlsx`` (data.export): the same answers, audited.
- ``GET /console/surveys/invitations`` (data.read): the invitations behind a step of the funnel
  (``stage``) or a reason (``reason``).
- ``GET /console/api/surveys/funnel`` and ``/console/api/surveys/responses``: the same as JSON.
- overview tiles ``surveys-nps`` / ``-csat`` / ``-ces``: the last 30 days against the 30 before;
  the customer page's panel: the customer's invitations and answers.

Every query is scoped by the principal's stores (:mod:`hub.features.surveys.console_queries`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select

from hub.console.app import PREFIX, ConsoleDenied
from hub.console.export import query_rows
from hub.console.scope import Principal
from hub.features.surveys import console_queries as cq
from hub.privacy import mask_identity, mask_text
from hub.store.schema import identities, touchpoints

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp
    from hub.features.surveys import SurveysFeature

log = logging.getLogger("cxhub.console.surveys")

#: identity namespaces of the hub's own that say nothing to a person
_INTERNAL_NAMESPACES = frozenset({"cxhub_customer"})
#: the identity a row names its customer by, first found first
_PREFERRED = ("member_id", "unionid", "openid", "alipay_uid", "phone", "email")


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


def _filters(app: ConsoleApp, me: Principal, feature: SurveysFeature, params: Mapping[str, str]) -> cq.Filters:
    try:
        return cq.parse_filters(
            params,
            me=me,
            tree=app.tree,
            feature=feature,
            zone=app.zone,
            today=app.rt.clock().astimezone(app.zone).date(),
        )
    except cq.FilterError as exc:
        raise ConsoleDenied(exc.status, exc.message) from None


def _limit(value: str | None) -> int:
    try:
        return cq.page_size(value)
    except cq.FilterError as exc:
        raise ConsoleDenied(exc.status, exc.message) from None


def customer_labels(app: ConsoleApp, customer_ids: list[str]) -> dict[str, str]:
    """Each customer as the console shows them: one identity (a member number first), masked."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    out: dict[str, tuple[int, str]] = {}
    with app.rt.store.connect() as conn:
        q = select(identities.c.customer_id, identities.c.namespace, identities.c.value).where(
            identities.c.customer_id.in_(ids), identities.c.namespace.not_in(sorted(_INTERNAL_NAMESPACES))
        )
        for cid, ns, value in conn.execute(q):
            rank = _PREFERRED.index(ns) if ns in _PREFERRED else len(_PREFERRED)
            label = f"{ns}: {mask_identity(ns, value)}"
            if cid not in out or (rank, label) < out[cid]:
                out[cid] = (rank, label)
    return {cid: label for cid, (_, label) in out.items()}


def _answer_text(value: Any) -> str:
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return "" if value is None else str(value)


def answer_row(
    inv: Mapping[str, Any], doc: Mapping[str, Any] | None, store_name: Any, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One answered invitation as the pages, the API and the exports show it: free texts masked
    (mobile numbers, email addresses), the customer by a masked identity."""
    doc = doc or {}
    feedback = doc.get("feedback") or {}
    answers = []
    for a in (doc.get("attributes") or {}).get("answers") or []:
        if not isinstance(a, Mapping):
            continue
        text = _answer_text(a.get("value"))
        answers.append(
            {
                "id": a.get("id"),
                "question": str(a.get("text") or a.get("id") or ""),
                "block": a.get("block_title"),
                "type": a.get("type"),
                "value": mask_text(text) if a.get("type") == "text" else text,
            }
        )
    said = feedback.get("text")
    return {
        "id": inv["id"],
        "response_id": inv["response_id"],
        "responded_at": inv["responded_at"],
        "store": inv["store"],
        "store_name": store_name(inv["store"]) if inv["store"] else "",
        "questionnaire": inv["questionnaire"],
        "channel": inv["channel"],
        "customer_id": inv["customer_id"],
        "customer": (labels or {}).get(inv["customer_id"] or "", ""),
        "nps": inv["nps"],
        "csat": inv["csat"],
        "ces": inv["ces"],
        "text": mask_text(str(said)) if said else "",
        "answers": answers,
    }


def invitation_row(inv: Mapping[str, Any], store_name: Any) -> dict[str, Any]:
    """One invitation as the pages show it (no recipient, no link, the detail masked)."""
    return {
        "id": inv["id"],
        "created_at": inv["created_at"],
        "store": inv["store"],
        "store_name": store_name(inv["store"]) if inv["store"] else "",
        "rule": inv["rule"],
        "questionnaire": inv["questionnaire"],
        "channel": inv["channel"],
        "customer_id": inv["customer_id"],
        "decision": inv["decision"],
        "status": inv["status"],
        "reason": inv["reason"],
        "detail": mask_text(inv["detail"]) if inv["detail"] else "",
        "send_at": inv["send_at"],
        "opened_at": inv["opened_at"],
        "responded_at": inv["responded_at"],
        "nps": inv["nps"],
        "csat": inv["csat"],
        "ces": inv["ces"],
    }


def _docs(app: ConsoleApp, ids: list[str]) -> dict[str, Any]:
    if not ids:
        return {}
    with app.rt.store.connect() as conn:
        q = select(touchpoints.c.id, touchpoints.c.doc).where(touchpoints.c.id.in_(ids))
        return {r.id: r.doc for r in conn.execute(q)}


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_iso(v) for v in value]
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    return value


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_iso(data), status_code=status)


class SurveyPages:
    """What the routes compute, apart from how they answer (page, fragment, JSON, file)."""

    def __init__(self, app: ConsoleApp, feature: SurveysFeature):
        self.app = app
        self.feature = feature
        self.types = cq.question_types(feature)

    def overview(self, me: Principal, f: cq.Filters) -> dict[str, Any]:
        with self.app.rt.store.connect() as conn:
            funnel = cq.funnel(conn, me, f)
            scores = cq.scores_over_time(conn, me, f, self.app.zone)
        return {"funnel": funnel, "scores": scores}

    def answers(self, me: Principal, f: cq.Filters, limit: int, after: str | None) -> tuple[list[dict[str, Any]], str]:
        c = cq.invitations.c
        with self.app.rt.store.connect() as conn:
            try:
                q = cq.after_cursor(cq.answers_query(conn, me, f, self.types), c.responded_at, after)
            except cq.FilterError as exc:
                raise ConsoleDenied(exc.status, exc.message) from None
            rows = [dict(r) for r in conn.execute(q.limit(limit + 1)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        docs = _docs(self.app, [r["response_id"] for r in rows if r["response_id"]])
        labels = customer_labels(self.app, [r["customer_id"] for r in rows if r["customer_id"]])
        out = [answer_row(r, docs.get(r["response_id"]), self.app.tree.store_name, labels) for r in rows]
        return out, (cq.cursor_of(rows[-1], "responded_at") if more and rows else "")

    def invitations(
        self, me: Principal, f: cq.Filters, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str]:
        c = cq.invitations.c
        try:
            q = cq.after_cursor(cq.invitations_query(me, f), c.created_at, after)
        except cq.FilterError as exc:
            raise ConsoleDenied(exc.status, exc.message) from None
        with self.app.rt.store.connect() as conn:
            rows = [dict(r) for r in conn.execute(q.limit(limit + 1)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        out = [invitation_row(r, self.app.tree.store_name) for r in rows]
        return out, (cq.cursor_of(rows[-1], "created_at") if more and rows else "")

    def export_rows(self, me: Principal, f: cq.Filters) -> Iterator[dict[str, Any]]:
        """Every answer of the filters (the export's cap applies), read as the file is written."""
        inv = cq.invitations
        with self.app.rt.store.connect() as conn:
            base = cq.answers_query(conn, me, f, self.types)
        q = base.add_columns(touchpoints.c.doc.label("response_doc")).outerjoin(
            touchpoints, touchpoints.c.id == inv.c.response_id
        )
        chunk: list[dict[str, Any]] = []
        for r in query_rows(self.app.rt.store, q):
            chunk.append(r)
            if len(chunk) >= 500:
                yield from self._export_chunk(chunk)
                chunk = []
        yield from self._export_chunk(chunk)

    def _export_chunk(self, chunk: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        labels = customer_labels(self.app, [r["customer_id"] for r in chunk if r["customer_id"]])
        for r in chunk:
            row = answer_row(r, r.get("response_doc"), self.app.tree.store_name, labels)
            row["answers"] = "；".join(f"{a['question']}: {a['value']}" for a in row["answers"])
            yield row

    def options(self, me: Principal) -> dict[str, Any]:
        """What the filter form offers: only the stores, districts and regions of the user's scope."""
        tree = self.app.tree
        stores = sorted(s for s in cq.known_stores(tree, self.feature) if me.sees_store(s))
        visible = set(stores)
        districts = [u for u in tree.of_kind("district") if tree.stores_under("district", u.id) & visible]
        regions = [u for u in tree.of_kind("region") if tree.stores_under("region", u.id) & visible]
        return {
            "stores": [(s, tree.store_name(s)) for s in stores],
            "districts": [(u.id, u.name or u.id) for u in districts],
            "regions": [(u.id, u.name or u.id) for u in regions],
            "questionnaires": sorted(
                {r.questionnaire for r in self.feature.config.rules} | set(self.feature.questionnaires)
            ),
            "channels": sorted({c.channel for c in self.feature.config.channels}),
            "questions": sorted(self.types),
            "metrics": list(cq.METRICS),
            "stages": list(cq.STAGES),
        }


def _charts(app: ConsoleApp, me: Principal, f: cq.Filters, scores: Mapping[str, Any]) -> dict[str, Any]:
    """The ECharts options of the trend and of the NPS scores, and their drill-down URL templates."""
    s = scores["series"]
    t = lambda key: app.t(me, key)  # noqa: E731
    trend = {
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["NPS", "CSAT", "CES"]},
        "grid": {"left": 40, "right": 40, "top": 30, "bottom": 30},
        "xAxis": {"type": "category", "data": s["days"]},
        "yAxis": [
            {"type": "value", "min": -100, "max": 100, "name": "NPS / CSAT %"},
            {"type": "value", "min": 1, "max": 7, "name": "CES"},
        ],
        "series": [
            {"name": "NPS", "type": "line", "connectNulls": True, "data": s["nps"]},
            {"name": "CSAT", "type": "line", "connectNulls": True, "data": s["csat"]},
            {"name": "CES", "type": "line", "yAxisIndex": 1, "connectNulls": True, "data": s["ces"]},
        ],
    }
    histogram = {
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 40, "right": 20, "top": 20, "bottom": 30},
        "xAxis": {"type": "category", "data": [str(i) for i in range(11)], "name": t("surveys.nps_score")},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [{"name": "NPS", "type": "bar", "data": scores["nps_histogram"]}],
    }
    rest = urlencode(f.params(period=False))
    return {
        "trend": trend,
        "histogram": histogram,
        # {name} is the day / the score, {series} the metric (NPS, CSAT, CES): see static/console.js
        "trend_drill": _drill("from={name}&to={name}&metric={series}", rest),
        "histogram_drill": _drill("min={name}&max={name}", urlencode(f.params(metric="nps"))),
    }


def _drill(template: str, rest: str) -> str:
    """The answers page's URL template of a chart (``{name}``, ``{series}`` filled by the click)."""
    return f"{PREFIX}/surveys/responses?{template}" + (f"&{rest}" if rest else "")


def build_router(app: ConsoleApp, feature: SurveysFeature) -> APIRouter:
    """The survey pages and JSON routes of one console."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    pages = SurveyPages(app, feature)
    read = app.guard("data.read")
    export = app.guard("data.export")

    def params(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.query_params.items()}

    @router.get("/surveys", response_class=HTMLResponse)
    def surveys_page(request: Request, me: Principal = Depends(read)) -> HTMLResponse:
        f = _filters(app, me, feature, params(request))
        data = pages.overview(me, f)
        return app.render(
            request,
            me,
            "surveys/page.html",
            f=f,
            data=data,
            charts=_charts(app, me, f, data["scores"]),
            options=pages.options(me),
            link=lambda path, **kw: f"{PREFIX}{path}?{urlencode(f.params(**kw))}",
        )

    @router.get("/surveys/responses", response_class=HTMLResponse)
    def responses_page(request: Request, me: Principal = Depends(read)) -> HTMLResponse:
        q = params(request)
        f = _filters(app, me, feature, q)
        rows, nxt = pages.answers(me, f, _limit(q.get("limit")), q.get("after"))
        keep = {k: v for k, v in q.items() if k != "after"}
        return app.render(
            request,
            me,
            "surveys/responses.html",
            f=f,
            rows=rows,
            next_url=f"{PREFIX}/surveys/responses?{urlencode({**keep, 'after': nxt})}" if nxt else "",
            export_query=urlencode({k: v for k, v in keep.items() if k != "limit"}),
            options=pages.options(me),
            query=keep,
        )

    @router.get("/surveys/responses.{fmt}")
    def responses_export(request: Request, fmt: str, me: Principal = Depends(export)) -> Response:
        from hub.console.export import export_response

        f = _filters(app, me, feature, params(request))
        columns = [
            ("responded_at", app.t(me, "surveys.col.responded_at")),
            ("store", app.t(me, "surveys.col.store")),
            ("store_name", app.t(me, "surveys.col.store_name")),
            ("questionnaire", app.t(me, "surveys.col.questionnaire")),
            ("channel", app.t(me, "surveys.col.channel")),
            ("customer", app.t(me, "surveys.col.customer")),
            ("nps", "NPS"),
            ("csat", "CSAT"),
            ("ces", "CES"),
            ("text", app.t(me, "surveys.col.text")),
            ("answers", app.t(me, "surveys.col.answers")),
            ("id", app.t(me, "surveys.col.invitation")),
        ]
        return export_response(
            app,
            me,
            fmt,
            f"survey-answers-{f.start}-{f.end}",
            columns,
            pages.export_rows(me, f),
            action="export.survey_responses",
            target=None,
            detail=f.as_dict(),
            store=f.store,
        )

    @router.get("/surveys/invitations", response_class=HTMLResponse)
    def invitations_page(request: Request, me: Principal = Depends(read)) -> HTMLResponse:
        q = params(request)
        f = _filters(app, me, feature, q)
        rows, nxt = pages.invitations(me, f, _limit(q.get("limit")), q.get("after"))
        keep = {k: v for k, v in q.items() if k != "after"}
        return app.render(
            request,
            me,
            "surveys/invitations.html",
            f=f,
            rows=rows,
            next_url=f"{PREFIX}/surveys/invitations?{urlencode({**keep, 'after': nxt})}" if nxt else "",
            options=pages.options(me),
        )

    @router.get("/api/surveys/funnel")
    def funnel_api(request: Request, me: Principal = Depends(read)) -> JSONResponse:
        f = _filters(app, me, feature, params(request))
        data = pages.overview(me, f)
        return _json({"filters": f.as_dict(), **data})

    @router.get("/api/surveys/responses")
    def responses_api(request: Request, me: Principal = Depends(read)) -> JSONResponse:
        q = params(request)
        f = _filters(app, me, feature, q)
        rows, nxt = pages.answers(me, f, _limit(q.get("limit")), q.get("after"))
        return _json({"filters": f.as_dict(), "rows": rows, "next": nxt or None})

    return router


# ---------------------------------------------------------------- tiles and the customer panel


def score_tile(app: ConsoleApp, me: Principal, feature: SurveysFeature, metric: str) -> str:
    """One score of the last 30 days in ``me``'s scope, against the 30 days before, with its trend."""
    today = app.rt.clock().astimezone(app.zone).date()
    f = _filters(app, me, feature, {"to": today.isoformat()})
    before = _filters(app, me, feature, {"to": (f.start - timedelta(days=1)).isoformat()})
    with app.rt.store.connect() as conn:
        now = cq.scores_over_time(conn, me, f, app.zone)
        prev = cq.scores_over_time(conn, me, before, app.zone)
    value, n = now["total"][metric], now["total"][f"{metric}_n"]
    previous = prev["total"][metric]
    delta = None if value is None or previous is None else round(value - previous, 2)
    chart = {
        "grid": {"left": 30, "right": 10, "top": 10, "bottom": 20},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "category", "data": now["series"]["days"], "show": False},
        "yAxis": {"type": "value", "scale": True},
        "series": [{"name": metric.upper(), "type": "line", "connectNulls": True, "data": now["series"][metric]}],
    }
    return fragment(
        app,
        me,
        "surveys/tile.html",
        metric=metric,
        value=value,
        n=n,
        delta=delta,
        chart=chart,
        chart_id=f"surveys-{metric}-chart",
        page=f"{PREFIX}/surveys?{urlencode(f.params())}",
        drill=_drill("from={name}&to={name}", urlencode(f.params(period=False, metric=metric))),
    )


def customer_panel(app: ConsoleApp, me: Principal, customer_id: str, feature: SurveysFeature) -> str:
    """The customer's invitations and answers in ``me``'s scope (nothing outside it)."""
    with app.rt.store.connect() as conn:
        invs = cq.customer_invitations(conn, me, customer_id)
    docs = _docs(app, [r["response_id"] for r in invs if r["response_id"]])
    rows = []
    for r in invs:
        row = invitation_row(r, app.tree.store_name)
        if r["response_id"]:
            row["answer"] = answer_row(r, docs.get(r["response_id"]), app.tree.store_name)
        rows.append(row)
    return fragment(app, me, "surveys/customer_panel.html", rows=rows)
