"""Console pages: customers: search, the customer page (identities, timeline, feature panels),
revealing a contact, exporting a customer's touchpoints.

- ``GET /console/customers?q=`` (data.read): by phone number (its keyed hash, as the ingest stores
  it), openid or member number: one probe of ``ix_identities_value``.
- ``GET /console/customers/{id}`` (data.read): identities masked (namespace, scope), opt-out,
  merged into, the touchpoints of the viewer's stores newest first, then each feature's panel
  (``Console.customer_panels``). A customer with no touchpoint in the viewer's scope is a 404, the
  same answer as an id that does not exist (a guessed id learns nothing).
- ``POST /console/customers/{id}/reveal`` (pii.reveal): the plain contacts (decrypted with the
  deployment's key) and an audit row ``pii.reveal`` that names the customer, never the contact.
- ``GET /console/customers/{id}/touchpoints.csv`` / ``.xlsx`` (data.export): the timeline in scope,
  masked, audited.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import func, select

from hub.console import NavItem
from hub.console.scope import Principal
from hub.privacy import mask_identity, mask_text, normalize
from hub.store.schema import customers, identities, touchpoints

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp

log = logging.getLogger("cxhub.console")

PAGE = 50
MAX_PAGE = 200
MAX_RESULTS = 50
#: a customer id as the hub makes them (uuid text); anything else is not one
CUSTOMER_ID = re.compile(r"^[0-9a-fA-F-]{8,36}$")
#: how many merges the page follows to the survivor
MAX_HOPS = 8


def search_values(app: ConsoleApp, q: str) -> list[str]:
    """The identity values a search term may be stored as: itself (an openid, a member number)
    and, when it looks like a phone number or an email, its keyed hashes."""
    q = q.strip()
    values = {q}
    vault = app.rt.ingestor.identity.vault
    digits = normalize("phone", q)
    if digits.isdigit() and 7 <= len(digits) <= 15:
        values.update(vault.hash(ns, q) for ns in ("phone", "mobile"))
    if "@" in q:
        values.add(vault.hash("email", q))
    return sorted(values)


def in_scope(conn: Any, principal: Principal, customer_ids: list[str]) -> set[str]:
    """The customers among ``customer_ids`` the principal may see: HQ sees every customer; a
    manager those with a touchpoint at one of their stores."""
    if not customer_ids or not principal.can("data.read"):
        return set()
    if principal.hq:
        return set(customer_ids)
    q = (
        select(touchpoints.c.customer_id)
        .where(touchpoints.c.customer_id.in_(customer_ids), principal.clause(touchpoints.c.store))
        .distinct()
    )
    return {r[0] for r in conn.execute(q)}


def timeline_query(principal: Principal, customer_id: str) -> Any:
    """The customer's touchpoints in scope, newest first (``ix_touchpoints_customer``)."""
    return (
        select(touchpoints)
        .where(touchpoints.c.customer_id == customer_id, principal.clause(touchpoints.c.store))
        .order_by(touchpoints.c.occurred_at.desc(), touchpoints.c.id.desc())
    )


def timeline_item(row: Any) -> dict[str, Any]:
    """What the timeline shows of one touchpoint (text masked again: an old row may predate the
    ingest's masking)."""
    doc = row["doc"] or {}
    fb = doc.get("feedback") or {}
    order = doc.get("order") or {}
    return {
        "id": row["id"],
        "occurred_at": row["occurred_at"],
        "kind": row["kind"],
        "channel": row["channel"] or "",
        "source": row["source"],
        "store": row["store"],
        "rating": fb.get("rating"),
        "rating_scale": fb.get("rating_scale"),
        "nps": fb.get("nps"),
        "text": mask_text(str(fb.get("text") or "")),
        "order_id": order.get("id") or "",
        "amount": order.get("amount"),
        "currency": order.get("currency") or "",
    }


def router(app: ConsoleApp) -> APIRouter:
    from hub.console.app import ConsoleDenied
    from hub.console.overview import add_nav_once

    r = APIRouter(prefix="/console", include_in_schema=False)
    add_nav_once(app, NavItem("cust.nav", "/customers", "data.read", 40))

    def not_found(me: Principal) -> ConsoleDenied:
        return ConsoleDenied(404, app.t(me, "cust.not_found"))

    def load(me: Principal, customer_id: str) -> dict[str, Any]:
        """The customer row (after its merges) when the principal may see it; 404 otherwise."""
        if not CUSTOMER_ID.match(customer_id):
            raise not_found(me)
        with app.rt.store.connect() as conn:
            cid = customer_id
            row = None
            for _ in range(MAX_HOPS):
                row = conn.execute(select(customers).where(customers.c.id == cid)).mappings().first()
                if row is None or not row["merged_into"]:
                    break
                cid = row["merged_into"]
            if row is None or not in_scope(conn, me, [row["id"]]):
                raise not_found(me)
            return dict(row)

    @r.get("/customers", response_class=HTMLResponse)
    def search(
        request: Request,
        q: str = Query("", max_length=128),
        me: Principal = Depends(app.guard("data.read")),
    ) -> HTMLResponse:
        q = q.strip()
        found: list[dict[str, Any]] = []
        if q:
            values = search_values(app, q)
            with app.rt.store.connect() as conn:
                hits = conn.execute(
                    select(identities.c.customer_id, identities.c.namespace, identities.c.scope, identities.c.value)
                    .where(identities.c.value.in_(values))
                    .limit(MAX_RESULTS * 4)
                ).all()
                ids = sorted({h.customer_id for h in hits})
                seen = in_scope(conn, me, ids)
                rows = (
                    conn.execute(select(customers).where(customers.c.id.in_(sorted(seen)))).mappings().all()
                    if seen
                    else []
                )
                last = (
                    dict(
                        conn.execute(
                            select(touchpoints.c.customer_id, func.max(touchpoints.c.occurred_at))
                            .where(touchpoints.c.customer_id.in_(sorted(seen)), me.clause(touchpoints.c.store))
                            .group_by(touchpoints.c.customer_id)
                        ).all()
                    )
                    if seen
                    else {}
                )
            by_customer: dict[str, list[str]] = {}
            for h in hits:
                if h.customer_id in seen:
                    by_customer.setdefault(h.customer_id, []).append(
                        f"{h.namespace}: {mask_identity(h.namespace, h.value)}"
                    )
            for row in rows[:MAX_RESULTS]:
                found.append({**dict(row), "matched": by_customer.get(row["id"], []), "last_at": last.get(row["id"])})
        return app.render(request, me, "customers.html", q=q, found=found, searched=bool(q))

    @r.get("/customers/{customer_id}", response_class=HTMLResponse)
    def customer_page(
        request: Request,
        customer_id: str,
        page: int = Query(1, ge=1, le=1000),
        limit: int = Query(PAGE, ge=1, le=MAX_PAGE),
        me: Principal = Depends(app.guard("data.read")),
    ) -> Response:
        cust = load(me, customer_id)
        if cust["id"] != customer_id:
            return RedirectResponse(f"/console/customers/{cust['id']}", status_code=303)
        cid = cust["id"]
        with app.rt.store.connect() as conn:
            ids = (
                conn.execute(
                    select(identities).where(identities.c.customer_id == cid).order_by(identities.c.first_seen)
                )
                .mappings()
                .all()
            )
            rows = conn.execute(timeline_query(me, cid).limit(limit + 1).offset((page - 1) * limit)).mappings().all()
            absorbed = (
                conn.execute(select(customers.c.id).where(customers.c.merged_into == cid).limit(20)).scalars().all()
            )
        shown_ids = [
            {
                "namespace": i["namespace"],
                "scope": i["scope"],
                "value": mask_identity(i["namespace"], i["value"]),
                "contact": bool(i["contact"]),
                "first_seen": i["first_seen"],
            }
            for i in ids
        ]
        items = [timeline_item(x) for x in rows[:limit]]
        panels: list[Markup] = []
        for panel in app.registry.customer_panels:
            try:
                panels.append(Markup(panel(app, me, cid)))  # noqa: S704  (panels return escaped HTML)
            except Exception:  # one broken panel must not take the customer page down
                log.exception("customer panel %s failed", getattr(panel, "__name__", panel))
                panels.append(Markup('<section class="card error">{}</section>').format(app.t(me, "cust.panel_failed")))
        return app.render(
            request,
            me,
            "customer.html",
            cust=cust,
            identities=shown_ids,
            absorbed=absorbed,
            items=items,
            page=page,
            limit=limit,
            more=len(rows) > limit,
            panels=panels,
            revealable=any(i["contact"] for i in shown_ids),
        )

    @r.post("/customers/{customer_id}/reveal", response_class=HTMLResponse)
    def reveal(request: Request, customer_id: str, me: Principal = Depends(app.guard("pii.reveal"))) -> HTMLResponse:
        cust = load(me, customer_id)
        cid = cust["id"]
        with app.rt.store.connect() as conn:
            rows = conn.execute(
                select(identities.c.namespace, identities.c.scope, identities.c.contact).where(
                    identities.c.customer_id == cid, identities.c.contact.is_not(None)
                )
            ).all()
        vault = app.rt.ingestor.identity.vault
        shown: list[dict[str, str]] = []
        failed = 0
        for ns, scope, contact in rows:
            try:
                shown.append({"namespace": ns, "scope": scope, "contact": vault.decrypt(contact)})
            except ValueError:
                failed += 1
        app.audit(me, "pii.reveal", f"customer:{cid}", {"contacts": len(shown), "failed": failed})
        html = app.env.get_template("customer_reveal.html").render(
            t=lambda key, **kw: app.t(me, key, **kw), shown=shown, failed=failed
        )
        if request.headers.get("hx-request"):
            return HTMLResponse(html)
        return app.render(request, me, "customer_revealed.html", cust=cust, fragment=Markup(html))  # noqa: S704

    @r.get("/customers/{customer_id}/touchpoints.{fmt}")
    def export_touchpoints(customer_id: str, fmt: str, me: Principal = Depends(app.guard("data.export"))) -> Response:
        from hub.console.export import export_response, query_rows

        cust = load(me, customer_id)
        cid = cust["id"]
        stmt = timeline_query(me, cid)

        def rows() -> Iterator[dict[str, Any]]:
            for row in query_rows(app.rt.store, stmt):
                item = timeline_item(row)
                item["store"] = app.tree.store_name(item["store"]) if item["store"] else ""
                yield item

        t = lambda key: app.t(me, key)  # noqa: E731
        columns = [
            ("occurred_at", t("common.at")),
            ("kind", t("cust.kind")),
            ("channel", t("cust.channel")),
            ("store", t("common.store")),
            ("source", t("ops.source")),
            ("rating", t("cust.rating")),
            ("nps", "NPS"),
            ("text", t("cust.text")),
            ("order_id", t("cust.order")),
            ("amount", t("cust.amount")),
            ("currency", t("cust.currency")),
        ]
        return export_response(
            app,
            me,
            fmt,
            f"customer-{cid[:8]}-touchpoints",
            columns,
            rows(),
            action="export.touchpoints",
            target=f"customer:{cid}",
        )

    return r
