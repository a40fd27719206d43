"""The case board's queries for the console: filters read from a request (and refused with a
message when they are wrong or outside the user's scope), SLA states, keyset pages, counts.

Every query here starts from :meth:`Principal.clause` on ``cases.store``: a store manager's board,
JSON and export hold that store's cases and nothing else, whatever the filters ask.

SLA states of an open case (the clock that runs: acknowledgement while new, resolution while
acknowledged): **breached** once past its deadline, **due soon** inside the warning window the
SLA sweep warns in (``warn_before`` of the severity, 20 % of the target by default, for the
acknowledgement; the last 10 % of the target for the resolution), **on time** before that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    false,
    func,
    or_,
    select,
    true,
    tuple_,
)

from hub.console.scope import OrgTree, Principal
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.schema import OPEN_STATES, case_topics, cases

#: the ``state`` filter: which statuses it keeps (None: all)
STATES: dict[str, tuple[str, ...] | None] = {
    "open": OPEN_STATES,
    "new": ("new",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "closed": ("closed",),
    "all": None,
}
SLA_STATES = ("on_time", "due_soon", "breached")
SEVERITIES = ("high", "medium", "low")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: rows of one export at most (an export is a download, not a backup)
EXPORT_MAX = 100_000


class FilterError(ValueError):
    """A filter the board refuses: ``status`` 400 (malformed, unknown) or 403 (outside the scope);
    ``key`` names the message, ``values`` fill it."""

    def __init__(self, status: int, key: str, **values: Any):
        super().__init__(f"{key} {values}")
        self.status = status
        self.key = key
        self.values = values


@dataclass(frozen=True)
class CaseFilters:
    """What the board shows: validated, in the user's scope."""

    store: str | None = None
    region: str | None = None
    district: str | None = None
    severity: str | None = None
    topic: str | None = None
    state: str = "open"
    sla: str | None = None
    limit: int = DEFAULT_LIMIT
    #: keyset: the (opened_at, id) of the last row of the previous page
    after: tuple[datetime, int] | None = None

    def params(self, **override: Any) -> dict[str, str]:
        """The filters as query parameters (without the page's position unless given)."""
        f = replace(self, after=None, **override) if override else replace(self, after=None)
        out = {
            k: str(v)
            for k, v in (
                ("store", f.store),
                ("region", f.region),
                ("district", f.district),
                ("severity", f.severity),
                ("topic", f.topic),
                ("sla", f.sla),
            )
            if v
        }
        if f.state != "open":
            out["state"] = f.state
        if f.limit != DEFAULT_LIMIT:
            out["limit"] = str(f.limit)
        return out

    def query(self, **override: Any) -> str:
        return urlencode(self.params(**override))

    def as_dict(self) -> dict[str, Any]:
        """For the audit of an export (ids only)."""
        return self.params()


def cursor_of(opened_at: datetime, case_id: int) -> str:
    """The ``after`` parameter of the page following a row."""
    return f"{opened_at.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}_{case_id}"


def parse_cursor(value: str) -> tuple[datetime, int]:
    stamp, _, cid = value.partition("_")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
        number = int(cid)
    except ValueError:
        raise FilterError(400, "feedback.error.bad_cursor") from None
    if number < 0:
        raise FilterError(400, "feedback.error.bad_cursor")
    return when, number


def _one(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    value = value.strip()
    if len(value) > 128:
        raise FilterError(400, "feedback.error.too_long", name=key)
    return value or None


def parse_filters(
    params: Mapping[str, str], tree: OrgTree, principal: Principal, topics: Mapping[str, str]
) -> CaseFilters:
    """Read and check the board's filters: unknown values -> 400, a unit outside ``principal``'s
    scope -> 403. ``topics``: the taxonomy's ids -> names."""
    store, region, district = _one(params, "store"), _one(params, "region"), _one(params, "district")
    for kind, value in (("store", store), ("region", region), ("district", district)):
        if value is None:
            continue
        if tree.get(kind, value) is None:
            raise FilterError(400, f"feedback.error.unknown_{kind}", value=value)
        stores = tree.stores_under(kind, value)
        if principal.stores is not None and not (stores & principal.stores):
            raise FilterError(403, "feedback.error.out_of_scope", value=value)
    severity = _one(params, "severity")
    if severity is not None and severity not in SEVERITIES:
        raise FilterError(400, "feedback.error.bad_value", name="severity", value=severity)
    state = _one(params, "state") or "open"
    if state not in STATES:
        raise FilterError(400, "feedback.error.bad_value", name="state", value=state)
    sla = _one(params, "sla")
    if sla is not None and sla not in SLA_STATES:
        raise FilterError(400, "feedback.error.bad_value", name="sla", value=sla)
    topic = _one(params, "topic")
    if topic is not None and topic not in topics:
        raise FilterError(400, "feedback.error.unknown_topic", value=topic)
    raw_limit = _one(params, "limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise FilterError(400, "feedback.error.bad_limit", max=MAX_LIMIT)
        limit = int(raw_limit)
    raw_after = _one(params, "after")
    after = parse_cursor(raw_after) if raw_after else None
    return CaseFilters(store, region, district, severity, topic, state, sla, limit, after)


# ---------------------------------------------------------------------------------------- SLA


@dataclass(frozen=True)
class SlaWindows:
    """The warning windows (seconds) per severity: before the acknowledgement and the resolution
    deadlines."""

    ack: Mapping[str, float]
    resolve: Mapping[str, float]

    @classmethod
    def of(cls, cfg: FeedbackConfig) -> SlaWindows:
        ack: dict[str, float] = {}
        res: dict[str, float] = {}
        for sev in SEVERITIES:
            target = cfg.sla[sev]  # type: ignore[index]
            ack[sev] = float(target.warn_before or target.ack * 0.2)
            res[sev] = float(target.resolve * 0.1)
        return cls(ack, res)

    def clock(self, row: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
        """The clock a row shows: which deadline, when, its state; None once resolved or closed.
        ``start`` is four warning windows before the deadline, so the page's countdown turns amber
        (under a quarter left) exactly when the server counts the case as due soon."""
        sev = row["severity"] if row["severity"] in SEVERITIES else "medium"
        if row["status"] == "new":
            due, window, kind = row["ack_due_at"], self.ack[sev], "ack"
        elif row["status"] == "acknowledged":
            due, window, kind = row["resolve_due_at"], self.resolve[sev], "resolve"
        else:
            return None
        if due < now:
            state = "breached"
        elif due < now + timedelta(seconds=window):
            state = "due_soon"
        else:
            state = "on_time"
        return {"kind": kind, "deadline": due, "start": due - timedelta(seconds=4 * window), "state": state}

    def condition(self, state: str, now: datetime) -> ColumnElement[bool]:
        """SQL for open cases in one SLA state."""
        c = cases.c
        if state == "breached":
            return or_(
                and_(c.status == "new", c.ack_due_at < now),
                and_(c.status == "acknowledged", c.resolve_due_at < now),
            )
        parts = []
        for sev in SEVERITIES:
            ack_edge = now + timedelta(seconds=self.ack[sev])
            res_edge = now + timedelta(seconds=self.resolve[sev])
            if state == "due_soon":
                new = and_(c.ack_due_at >= now, c.ack_due_at < ack_edge)
                acked = and_(c.resolve_due_at >= now, c.resolve_due_at < res_edge)
            else:
                new = c.ack_due_at >= ack_edge
                acked = c.resolve_due_at >= res_edge
            parts.append(
                and_(c.severity == sev, or_(and_(c.status == "new", new), and_(c.status == "acknowledged", acked)))
            )
        if state == "on_time":  # a severity the config no longer knows counts as on time
            parts.append(and_(c.status.in_(OPEN_STATES), c.severity.not_in(SEVERITIES)))
        return or_(*parts)


# ------------------------------------------------------------------------------------- queries


def scope_clause(principal: Principal, f: CaseFilters, tree: OrgTree) -> ColumnElement[bool]:
    """The principal's scope and the unit filters, on ``cases.store``."""
    parts: list[ColumnElement[bool]] = [principal.clause(cases.c.store)]
    if f.store:
        parts.append(cases.c.store == f.store)
    for kind, value in (("region", f.region), ("district", f.district)):
        if value:
            stores = sorted(tree.stores_under(kind, value))
            parts.append(cases.c.store.in_(stores) if stores else false())
    return and_(true(), *parts)


def _where(
    principal: Principal,
    f: CaseFilters,
    tree: OrgTree,
    windows: SlaWindows,
    now: datetime,
    *,
    with_state: bool = True,
) -> list[ColumnElement[bool]]:
    where = [scope_clause(principal, f, tree)]
    if f.severity:
        where.append(cases.c.severity == f.severity)
    if f.topic:
        where.append(cases.c.id.in_(select(case_topics.c.case_id).where(case_topics.c.topic == f.topic)))
    if with_state:
        statuses = STATES[f.state]
        if f.sla:  # an SLA state is a state of open cases
            statuses = tuple(s for s in (statuses or OPEN_STATES) if s in OPEN_STATES)
            where.append(windows.condition(f.sla, now))
        if statuses is not None:
            where.append(cases.c.status.in_(statuses) if statuses else false())
    return where


BOARD_COLUMNS = (
    cases.c.id,
    cases.c.status,
    cases.c.severity,
    cases.c.store,
    cases.c.customer_id,
    cases.c.opened_at,
    cases.c.ack_due_at,
    cases.c.resolve_due_at,
    cases.c.acknowledged_at,
    cases.c.acknowledged_by,
    cases.c.resolved_at,
    cases.c.resolved_by,
    cases.c.level,
    cases.c.touchpoints,
    cases.c.doc,
)


def board_query(
    principal: Principal, f: CaseFilters, tree: OrgTree, windows: SlaWindows, now: datetime, *, limit: int
) -> Select[Any]:
    q = select(*BOARD_COLUMNS).where(*_where(principal, f, tree, windows, now))
    if f.after is not None:
        q = q.where(tuple_(cases.c.opened_at, cases.c.id) < tuple_(*f.after))
    return q.order_by(cases.c.opened_at.desc(), cases.c.id.desc()).limit(limit)


def board_page(
    conn: Connection, principal: Principal, f: CaseFilters, tree: OrgTree, windows: SlaWindows, now: datetime
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the board and the ``after`` of the next (None on the last page)."""
    rows = [dict(r) for r in conn.execute(board_query(principal, f, tree, windows, now, limit=f.limit + 1)).mappings()]
    nxt = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        nxt = cursor_of(rows[-1]["opened_at"], rows[-1]["id"])
    return rows, nxt


def iter_cases(
    conn: Connection,
    principal: Principal,
    f: CaseFilters,
    tree: OrgTree,
    windows: SlaWindows,
    now: datetime,
    *,
    batch: int = 500,
    cap: int = EXPORT_MAX,
) -> Iterator[dict[str, Any]]:
    """Every case the filters keep, newest first, in keyset batches (exports)."""
    sent = 0
    after = f.after
    while sent < cap:
        q = board_query(principal, replace(f, after=after), tree, windows, now, limit=min(batch, cap - sent))
        rows = [dict(r) for r in conn.execute(q).mappings()]
        yield from rows
        sent += len(rows)
        if len(rows) < batch:
            return
        after = (rows[-1]["opened_at"], rows[-1]["id"])


def sla_counts(
    conn: Connection, principal: Principal, f: CaseFilters, tree: OrgTree, windows: SlaWindows, now: datetime
) -> dict[str, int]:
    """Open cases in scope (and the unit, severity and topic filters) by SLA state."""
    breached = windows.condition("breached", now)
    soon = windows.condition("due_soon", now)
    q = select(
        func.count(),
        func.coalesce(func.sum(case((breached, 1), else_=0)), 0),
        func.coalesce(func.sum(case((soon, 1), else_=0)), 0),
    ).where(*_where(principal, f, tree, windows, now, with_state=False), cases.c.status.in_(OPEN_STATES))
    total, late, due = (int(v) for v in conn.execute(q).one())
    return {"on_time": total - late - due, "due_soon": due, "breached": late, "open": total}


def top_topics(conn: Connection, principal: Principal, since: datetime, *, limit: int = 10) -> list[tuple[str, int]]:
    """The negative topics of the cases opened since ``since`` in scope, most frequent first."""
    topic = case_topics.c.topic
    n = func.count().label("n")
    q = (
        select(topic, n)
        .where(principal.clause(case_topics.c.store), case_topics.c.opened_at >= since)
        .group_by(topic)
        .order_by(n.desc(), topic)
        .limit(limit)
    )
    return [(str(topic), int(count)) for topic, count in conn.execute(q)]
