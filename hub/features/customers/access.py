"""Reading customers, scoped by the org hierarchy: the one data access of the customer view (CLI,
JSON API, and the web console to come).

Every function takes a :class:`Scope` (``hq``, ``region:ID``, ``district:ID`` or ``store:ID``).
The hierarchy store → district → region → HQ comes from the config (``feedback.org``: each store
names its district, each district its region). A scope below HQ sees the stores under it only:
a customer is visible when they have a touchpoint in one of those stores, and their timeline,
cases and figures are those of those stores. A store the hierarchy does not know is seen from HQ
only. Personal data is masked unless the caller asks to reveal it (the CLI's ``--reveal``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, and_, column, func, select, table
from sqlalchemy.sql.elements import ColumnElement

from hub.errors import CxhubError
from hub.features.customers.config import check_scope
from hub.features.customers.schema import customer_actions, customer_scores
from hub.privacy import Vault, mask_identity, mask_text
from hub.store.schema import customers, identities, touchpoints


class CustomerNotFound(CxhubError):
    """No such customer, or not within the caller's scope (the same answer: a scope hides existence)."""


@dataclass(frozen=True)
class Scope:
    """A node of the org hierarchy: ``hq`` sees everything."""

    level: str
    id: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scope:
        check_scope(text)
        if text.strip() == "hq":
            return cls("hq")
        level, _, ident = text.strip().partition(":")
        return cls(level, ident)

    def __str__(self) -> str:
        return "hq" if self.level == "hq" else f"{self.level}:{self.id}"


HQ = Scope("hq")


@dataclass
class OrgTree:
    """Stores -> districts -> regions."""

    store_district: dict[str, str | None] = field(default_factory=dict)
    district_region: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any) -> OrgTree:
        """The hierarchy the config declares (``feedback.org``), read through its plain attributes."""
        org = getattr(config.section("feedback"), "org", None) if config is not None else None
        if org is None:
            return cls()
        return cls(
            {s: n.parent for s, n in getattr(org, "stores", {}).items()},
            {d: n.parent for d, n in getattr(org, "districts", {}).items()},
        )

    def stores(self, scope: Scope) -> set[str] | None:
        """The stores a scope sees (None: every store, for HQ). An unknown node sees none."""
        if scope.level == "hq":
            return None
        if scope.level == "store":
            return {scope.id} if scope.id else set()
        if scope.level == "district":
            return {s for s, d in self.store_district.items() if d == scope.id}
        districts = {d for d, r in self.district_region.items() if r == scope.id}
        return {s for s, d in self.store_district.items() if d in districts}

    def path(self, store: str | None) -> dict[str, str | None]:
        district = self.store_district.get(store) if store else None
        return {
            "store": store,
            "district": district,
            "region": self.district_region.get(district) if district else None,
        }


def _in(col: Any, stores: set[str] | None) -> ColumnElement[bool] | None:
    if stores is None:
        return None
    return col.in_(sorted(stores))


def _doc(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


def _survivor(conn: Connection, cid: str) -> str:
    """Follow merges to the customer that absorbed ``cid``."""
    seen = set()
    while cid not in seen:
        seen.add(cid)
        nxt = conn.execute(select(customers.c.merged_into).where(customers.c.id == cid)).scalar()
        if not nxt:
            return cid
        cid = nxt
    return cid


def find_customer(
    conn: Connection,
    *,
    customer_id: str | None = None,
    phone: str | None = None,
    openid: str | None = None,
    vault: Vault | None = None,
) -> str:
    """The customer id from an id, a phone number (matched by its keyed hash) or a WeChat openid."""
    if customer_id:
        found = conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).scalar()
        if found is None:
            raise CustomerNotFound(f"no customer {customer_id!r}")
        return _survivor(conn, found)
    if phone:
        if vault is None:
            raise CustomerNotFound("looking up a phone number needs the secret key")
        hashes = [vault.hash(ns, phone) for ns in ("phone", "mobile")]
        q = select(identities.c.customer_id).where(
            identities.c.namespace.in_(["phone", "mobile"]), identities.c.value.in_(hashes)
        )
        what = f"phone {mask_text(phone)}"
    elif openid:
        q = select(identities.c.customer_id).where(identities.c.namespace == "openid", identities.c.value == openid)
        what = f"openid {mask_identity('openid', openid)}"
    else:
        raise CustomerNotFound("give a customer id, --phone or --openid")
    found = conn.execute(q.limit(1)).scalar()
    if found is None:
        raise CustomerNotFound(f"no customer with {what}")
    return _survivor(conn, found)


def _visible(conn: Connection, cid: str, stores: set[str] | None) -> bool:
    if stores is None:
        return True
    if not stores:
        return False
    q = (
        select(touchpoints.c.id)
        .where(touchpoints.c.customer_id == cid, touchpoints.c.store.in_(sorted(stores)))
        .limit(1)
    )
    return conn.execute(q).first() is not None


def _amount(doc: Mapping[str, Any]) -> Decimal | None:
    raw = (doc.get("order") or {}).get("amount")
    if raw is None:
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


_cases = table(
    "cases",
    column("id"),
    column("status"),
    column("severity"),
    column("customer_id"),
    column("store"),
    column("opened_at"),
    column("ack_due_at"),
    column("resolve_due_at"),
    column("acknowledged_at"),
    column("resolved_at"),
    column("recovered"),
    column("doc"),
)


def _has_cases(conn: Connection) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(conn).has_table("cases"))


def profile(
    conn: Connection,
    customer_id: str,
    scope: Scope,
    org: OrgTree,
    *,
    now: datetime,
    reveal: bool = False,
    timeline_limit: int = 50,
) -> dict[str, Any]:
    """The customer view: identities, figures, NPS/CSAT history and trend, cases, topics, stores,
    the score with its reasons, and a timeline (newest first). Raises :class:`CustomerNotFound`
    when the customer is outside ``scope``."""
    stores = org.stores(scope)
    if not _visible(conn, customer_id, stores):
        raise CustomerNotFound(f"no customer {customer_id!r} in scope {scope}")
    idents = [
        {
            "namespace": r.namespace,
            "scope": r.scope or None,
            "value": r.value if reveal and not r.value.startswith("h:") else mask_identity(r.namespace, r.value),
            "first_seen": r.first_seen,
        }
        for r in conn.execute(
            select(identities.c.namespace, identities.c.scope, identities.c.value, identities.c.first_seen)
            .where(identities.c.customer_id == customer_id)
            .order_by(identities.c.namespace, identities.c.first_seen)
        )
    ]
    where = [touchpoints.c.customer_id == customer_id]
    limit_store = _in(touchpoints.c.store, stores)
    if limit_store is not None:
        where.append(limit_store)
    rows = conn.execute(
        select(
            touchpoints.c.id,
            touchpoints.c.kind,
            touchpoints.c.source,
            touchpoints.c.occurred_at,
            touchpoints.c.store,
            touchpoints.c.doc,
        )
        .where(and_(*where))
        .order_by(touchpoints.c.occurred_at)
    ).all()
    spend = Decimal(0)
    purchase_days: set[str] = set()
    visits: Counter[str] = Counter()
    nps: list[dict[str, Any]] = []
    csat: list[dict[str, Any]] = []
    topics: Counter[str] = Counter()
    timeline: list[dict[str, Any]] = []
    last_purchase: datetime | None = None
    for r in rows:
        doc = _doc(r.doc)
        fb = doc.get("feedback") or {}
        amount = _amount(doc)
        if r.store:
            visits[r.store] += 1
        if r.kind == "transaction" and amount is not None and amount > 0:
            spend += amount
            purchase_days.add(r.occurred_at.date().isoformat())
            last_purchase = r.occurred_at
        elif r.kind == "refund" or (amount is not None and amount < 0):
            spend -= abs(amount) if amount is not None else Decimal(0)
        if fb.get("nps") is not None:
            nps.append({"at": r.occurred_at, "nps": fb["nps"]})
        if fb.get("csat") is not None:
            csat.append({"at": r.occurred_at, "csat": fb["csat"]})
        for t in fb.get("topics") or ():
            topics[t] += 1
        entry: dict[str, Any] = {"at": r.occurred_at, "kind": r.kind, "source": r.source, "store": r.store, "id": r.id}
        if amount is not None:
            entry["amount"] = str(amount)
        items = [
            i.get("name") or i.get("sku") for i in (doc.get("order") or {}).get("items") or [] if isinstance(i, dict)
        ]
        if items:
            entry["items"] = items[:5]
        for k in ("nps", "csat", "ces", "rating"):
            if fb.get(k) is not None:
                entry[k] = fb[k]
        if fb.get("text"):
            entry["text"] = fb["text"] if reveal else mask_text(fb["text"])
        if fb.get("topics"):
            entry["topics"] = fb["topics"]
        timeline.append(entry)
    cases_out: list[dict[str, Any]] = []
    if _has_cases(conn):
        cw = [_cases.c.customer_id == customer_id]
        cs = _in(_cases.c.store, stores)
        if cs is not None:
            cw.append(cs)
        for c in conn.execute(select(_cases).where(and_(*cw)).order_by(_cases.c.opened_at)).mappings():
            opened = _aware(c["opened_at"])
            ack_due, resolve_due = _aware(c["ack_due_at"]), _aware(c["resolve_due_at"])
            open_ = c["status"] in ("new", "acknowledged")
            breached = bool(
                (
                    open_
                    and (
                        (c["acknowledged_at"] is None and ack_due and ack_due < now)
                        or (resolve_due and resolve_due < now)
                    )
                )
                or (not open_ and c["resolved_at"] and resolve_due and _aware(c["resolved_at"]) > resolve_due)  # type: ignore[operator]
            )
            cases_out.append(
                {
                    "id": c["id"],
                    "status": c["status"],
                    "severity": c["severity"],
                    "store": c["store"],
                    "opened_at": opened,
                    "breached": breached,
                    "recovered": c["recovered"],
                }
            )
            timeline.append(
                {
                    "at": opened,
                    "kind": "case",
                    "id": str(c["id"]),
                    "store": c["store"],
                    "status": c["status"],
                    "severity": c["severity"],
                    "breached": breached,
                }
            )
    timeline.sort(key=lambda e: e["at"] or now, reverse=True)
    score = conn.execute(select(customer_scores).where(customer_scores.c.customer_id == customer_id)).mappings().first()
    actions = [
        dict(a)
        for a in conn.execute(
            select(
                customer_actions.c.rule,
                customer_actions.c.at,
                customer_actions.c.action,
                customer_actions.c.decision,
                customer_actions.c.reason,
                customer_actions.c.ref,
            )
            .where(customer_actions.c.customer_id == customer_id)
            .order_by(customer_actions.c.at.desc())
            .limit(20)
        ).mappings()
    ]
    return {
        "customer_id": customer_id,
        "scope": str(scope),
        "identities": idents,
        "spend": str(spend),
        "frequency": len(purchase_days),
        "recency_days": (now - last_purchase).days if last_purchase else None,
        "last_purchase_at": last_purchase,
        "nps": {"history": nps, "trend": _trend([p["nps"] for p in nps])},
        "csat": {"history": csat, "trend": _trend([p["csat"] for p in csat])},
        "cases": {
            "open": sum(1 for c in cases_out if c["status"] in ("new", "acknowledged")),
            "breached": sum(1 for c in cases_out if c["breached"]),
            "list": cases_out,
        },
        "topics": dict(topics.most_common()),
        "stores": [{**org.path(s), "visits": n} for s, n in visits.most_common()],
        "score": _score(score),
        "actions": actions,
        "timeline": timeline[:timeline_limit],
    }


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _trend(values: list[int]) -> str | None:
    """``improving`` / ``worsening`` / ``steady``: the latest answer against the mean of the earlier ones."""
    if len(values) < 2:
        return None
    before = sum(values[:-1]) / (len(values) - 1)
    if values[-1] > before + 0.5:
        return "improving"
    if values[-1] < before - 0.5:
        return "worsening"
    return "steady"


def _score(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = (
        "scored_at",
        "risk",
        "previous_risk",
        "p_alive",
        "expected",
        "value_at_risk",
        "insufficient",
        "reasons",
        "store",
    )
    return {k: row[k] for k in keys}


def at_risk(conn: Connection, scope: Scope, org: OrgTree, *, min_risk: float, limit: int = 100) -> dict[str, Any]:
    """At-risk customers by store (home store: the one they visit most), with the value at risk:
    ``{"stores": [{store, district, region, customers, value_at_risk}], "customers": [...]}``."""
    stores = org.stores(scope)
    where = [customer_scores.c.risk >= min_risk]
    cond = _in(customer_scores.c.store, stores)
    if cond is not None:
        where.append(cond)
    by_store = conn.execute(
        select(customer_scores.c.store, func.count(), func.sum(customer_scores.c.value_at_risk))
        .where(and_(*where))
        .group_by(customer_scores.c.store)
        .order_by(func.sum(customer_scores.c.value_at_risk).desc())
    ).all()
    top = conn.execute(
        select(
            customer_scores.c.customer_id,
            customer_scores.c.store,
            customer_scores.c.risk,
            customer_scores.c.value_at_risk,
            customer_scores.c.spend,
            customer_scores.c.reasons,
            customer_scores.c.insufficient,
        )
        .where(and_(*where))
        .order_by(customer_scores.c.value_at_risk.desc(), customer_scores.c.risk.desc())
        .limit(limit)
    ).mappings()
    return {
        "scope": str(scope),
        "min_risk": min_risk,
        "stores": [
            {**org.path(s), "customers": int(n), "value_at_risk": round(float(v or 0), 2)} for s, n, v in by_store
        ],
        "customers": [
            {
                **dict(r),
                "reasons": [
                    x["text"] for x in (r["reasons"] if isinstance(r["reasons"], list) else json.loads(r["reasons"]))
                ],
            }
            for r in top
        ],
    }


def scopes_of(values: Iterable[str]) -> list[Scope]:
    return [Scope.parse(v) for v in values]
