"""What the console's survey pages read: the filters of a request, the funnel, the reasons an
invitation was not sent, the scores over time, the answers and the invitations behind each number.

Every query starts from :func:`scoped` (the principal's stores, then the page's filters) on
``survey_invitations``, whose indexes serve each of them: ``(store, created_at)`` / ``created_at``
for the funnel and the invitations, ``(store, responded_at)`` / ``responded_at`` for the scores and
the answers. A response's scores are copied onto its invitation when it is stored and the send
time when its message goes, so the funnel and the charts read those indexes alone on PostgreSQL
(they INCLUDE the columns counted), and no query reads a touchpoint's JSON except the page of
answers shown, by primary key.

The funnel of a period (invitations created in it):

- eligible: a survey rule fired on the transaction (every invitation row, whatever was decided);
- invited: decided to send (``scheduled`` / ``deferred``);
- sent: its message was handed to its platform (``sent_at``, stamped by the send-time check; or
  it was opened or answered), and not found unsendable since (expired, cancelled, failed);
- opened: the customer opened the survey page (or answered);
- answered: a response names it.

"Why not sent": every suppressed invitation by its ``reason``, every unsendable one by its
``reason`` (expired_unsent, opted_out, undeliverable), and ``waiting``: invited, not yet sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, Select, and_, false, func, or_, select

from hub.features.surveys.schema import SENT_DECISIONS, UNSENT_STATUSES, invitations
from hub.features.surveys.stats import ces, csat, nps

if TYPE_CHECKING:
    from hub.console.scope import OrgTree, Principal
    from hub.features.surveys import SurveysFeature

#: the default period: the last 30 days, today included
DEFAULT_DAYS = 30
#: the longest period a page reads
MAX_DAYS = 366
#: rows of a page of answers or invitations (default, most)
PAGE_SIZE = 50
MAX_PAGE = 200
STAGES = ("eligible", "invited", "sent", "opened", "answered", "suppressed", "unsent", "waiting")
METRICS: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class FilterError(ValueError):
    """A filter the pages refuse: ``status`` (400 bad value, 403 a store out of scope) and a message
    that names the parameter."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Filters:
    """A request's period and filters, checked."""

    start: date
    end: date  # inclusive, local dates
    since: datetime  # UTC, inclusive
    until: datetime  # UTC, exclusive
    store: str | None = None
    region: str | None = None
    district: str | None = None
    questionnaire: str | None = None
    channel: str | None = None
    #: the stores the org filters leave (None: no org filter)
    stores: frozenset[str] | None = None
    # answers only
    metric: str | None = None
    low: int | None = None
    high: int | None = None
    question: str | None = None
    # invitations only
    stage: str | None = None
    reason: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def params(self, *, period: bool = True, **override: Any) -> dict[str, str]:
        """The query parameters that give these filters back (for links), with ``override``."""
        out: dict[str, str] = {}
        if period:
            out.update({"from": self.start.isoformat(), "to": self.end.isoformat()})
        for key in ("store", "region", "district", "questionnaire", "channel"):
            value = getattr(self, key)
            if value:
                out[key] = value
        out.update({k: str(v) for k, v in override.items() if v is not None})
        return out

    def as_dict(self) -> dict[str, Any]:
        """The filters in words (audit rows, the JSON API): ids and codes only."""
        keys = ("store", "region", "district", "questionnaire", "channel", "metric", "question", "stage", "reason")
        out: dict[str, Any] = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        out.update({k: getattr(self, k) for k in keys if getattr(self, k)})
        if self.low is not None:
            out["min"] = self.low
        if self.high is not None:
            out["max"] = self.high
        return out


def _day(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10]) if len(value.strip()) == 10 else date.fromisoformat(value)
    except ValueError:
        raise FilterError(400, f"{name}: not a date (YYYY-MM-DD): {value[:32]!r}") from None


def _int(name: str, value: str | None, low: int, high: int) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise FilterError(400, f"{name}: not a whole number: {value[:16]!r}") from None
    if not low <= n <= high:
        raise FilterError(400, f"{name}: {n} is outside {low}..{high}")
    return n


def known_stores(tree: OrgTree, feature: SurveysFeature) -> set[str]:
    """The stores the config names (the org hierarchy and the surveys section)."""
    return {u.id for u in tree.of_kind("store")} | set(feature.config.stores)


def question_types(feature: SurveysFeature) -> dict[str, str]:
    """Every question id of the configured questionnaires -> its type."""
    out: dict[str, str] = {}
    for q in feature.questionnaires.values():
        for question in (*q.base, *(x for b in q.blocks for x in b.questions), *q.closing):
            out.setdefault(question.id, question.type)
    return out


def parse_filters(
    params: Mapping[str, str],
    *,
    me: Principal,
    tree: OrgTree,
    feature: SurveysFeature,
    zone: ZoneInfo,
    today: date,
) -> Filters:
    """The period and filters of a request; :class:`FilterError` names what is wrong."""
    start, end = _day("from", params.get("from")), _day("to", params.get("to"))
    if end is None:
        end = today if start is None else min(start + timedelta(days=DEFAULT_DAYS - 1), today)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise FilterError(400, f"to ({end}) is before from ({start})")
    if (end - start).days + 1 > MAX_DAYS:
        raise FilterError(400, f"the period is {(end - start).days + 1} days; at most {MAX_DAYS}")
    since = datetime.combine(start, datetime.min.time(), zone).astimezone(UTC)
    until = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)

    def text(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        if value and not _ID.match(value):
            raise FilterError(400, f"{name}: not a valid id: {value[:32]!r}")
        return value or None

    store, region, district = text("store"), text("region"), text("district")
    stores: set[str] | None = None
    if store:
        if store not in known_stores(tree, feature):
            raise FilterError(400, f"store: unknown store {store!r}")
        if not me.sees_store(store):
            raise FilterError(403, f"store: {store} is not in your scope")
        stores = {store}
    for kind, value in (("region", region), ("district", district)):
        if value:
            if tree.get(kind, value) is None:
                raise FilterError(400, f"{kind}: unknown {kind} {value!r}")
            under = set(tree.stores_under(kind, value))
            stores = under if stores is None else stores & under
    questionnaire = text("questionnaire")
    if questionnaire and questionnaire not in {r.questionnaire for r in feature.config.rules} | set(
        feature.questionnaires
    ):
        raise FilterError(400, f"questionnaire: unknown questionnaire {questionnaire!r}")
    channel = text("channel")
    if channel and channel not in {c.channel for c in feature.config.channels}:
        raise FilterError(400, f"channel: unknown channel {channel!r}")
    metric = (params.get("metric") or "").strip().lower() or None
    if metric and metric not in METRICS:
        raise FilterError(400, f"metric: one of {', '.join(METRICS)}, not {metric[:16]!r}")
    question = text("question")
    types = question_types(feature)
    if question and question not in types:
        raise FilterError(400, f"question: unknown question {question!r}")
    scored = question is not None and types.get(question) in ("nps", "csat", "ces", "rating")
    bounds = (0, 10)
    if metric:
        bounds = METRICS[metric]
    low, high = _int("min", params.get("min"), *bounds), _int("max", params.get("max"), *bounds)
    if (low is not None or high is not None) and not (metric or scored):
        raise FilterError(400, "min/max: choose a metric (nps, csat, ces) or a scored question")
    if low is not None and high is not None and high < low:
        raise FilterError(400, f"max ({high}) is below min ({low})")
    stage = (params.get("stage") or "").strip() or None
    if stage and stage not in STAGES:
        raise FilterError(400, f"stage: one of {', '.join(STAGES)}, not {stage[:16]!r}")
    reason = (params.get("reason") or "").strip() or None
    if reason and not _CODE.match(reason):
        raise FilterError(400, f"reason: not a reason code: {reason[:32]!r}")
    return Filters(
        start=start,
        end=end,
        since=since,
        until=until,
        store=store,
        region=region,
        district=district,
        questionnaire=questionnaire,
        channel=channel,
        stores=frozenset(stores) if stores is not None else None,
        metric=metric,
        low=low,
        high=high,
        question=question,
        stage=stage,
        reason=reason,
    )


# ---------------------------------------------------------------- scope


def scoped(me: Principal, f: Filters) -> list[ColumnElement[bool]]:
    """The principal's scope, then the org, questionnaire and channel filters, on invitations."""
    c = invitations.c
    conds: list[ColumnElement[bool]] = [me.clause(c.store)]
    if f.stores is not None:
        conds.append(c.store.in_(sorted(f.stores)) if f.stores else false())
    if f.questionnaire:
        conds.append(c.questionnaire == f.questionnaire)
    if f.channel:
        conds.append(c.channel == f.channel)
    return conds


def stage_clause(stage: str | None) -> ColumnElement[bool] | None:
    """The invitations of one step of the funnel (or of a reason's group)."""
    c = invitations.c
    invited = c.decision.in_(SENT_DECISIONS)
    live = c.status.not_in(UNSENT_STATUSES)
    seen = or_(c.opened_at.is_not(None), c.status == "responded")
    if stage in (None, "eligible"):
        return None
    if stage == "invited":
        return invited
    if stage == "suppressed":
        return c.decision.not_in(SENT_DECISIONS)
    if stage == "unsent":
        return and_(invited, c.status.in_(UNSENT_STATUSES))
    if stage == "answered":
        return c.status == "responded"
    if stage == "opened":
        return and_(invited, live, seen)
    if stage == "sent":
        return and_(invited, live, or_(seen, c.sent_at.is_not(None)))
    # waiting: invited, still pending, its message not handed to its platform yet
    return and_(invited, c.status == "pending", c.opened_at.is_(None), c.sent_at.is_(None))


# ---------------------------------------------------------------- the funnel


def funnel(conn: Connection, me: Principal, f: Filters) -> dict[str, Any]:
    """The funnel of the period and every reason an invitation was not sent, with counts."""
    c = invitations.c
    where = [*scoped(me, f), c.created_at >= f.since, c.created_at < f.until]
    opened = c.opened_at.is_not(None)
    sent = c.sent_at.is_not(None)
    q = (
        select(c.decision, c.status, c.reason, opened.label("opened"), sent.label("sent"), func.count().label("n"))
        .where(*where)
        .group_by(c.decision, c.status, c.reason, opened, sent)
    )
    counts = dict.fromkeys(("eligible", "invited", "sent", "opened", "answered"), 0)
    reasons: dict[tuple[str, str], int] = {}
    for row in conn.execute(q):
        n = int(row.n)
        counts["eligible"] += n
        if row.decision not in SENT_DECISIONS:
            key = ("suppressed", row.reason or "unknown")
            reasons[key] = reasons.get(key, 0) + n
            continue
        counts["invited"] += n
        if row.status in UNSENT_STATUSES:
            key = ("unsent", row.reason or row.status)
            reasons[key] = reasons.get(key, 0) + n
            continue
        seen = row.status == "responded" or bool(row.opened)
        counts["answered"] += n if row.status == "responded" else 0
        counts["opened"] += n if seen else 0
        counts["sent"] += n if seen or row.sent else 0
    unsent = sum(n for (kind, _), n in reasons.items() if kind == "unsent")
    waiting = counts["invited"] - unsent - counts["sent"]
    if waiting > 0:
        reasons[("waiting", "waiting")] = waiting
    listed = [
        {"group": kind, "reason": code, "count": n}
        for (kind, code), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {"counts": counts, "reasons": listed, "not_sent": counts["eligible"] - counts["sent"]}


# ---------------------------------------------------------------- scores over time


def _days(f: Filters) -> list[date]:
    return [f.start + timedelta(days=i) for i in range((f.end - f.start).days + 1)]


def scores_over_time(conn: Connection, me: Principal, f: Filters, zone: ZoneInfo) -> dict[str, Any]:
    """NPS, CSAT and CES per local day of the period (answers by ``responded_at``), the period's
    figures, and the NPS answers by score (0..10)."""
    c = invitations.c
    where = [*scoped(me, f), c.status == "responded", c.responded_at >= f.since, c.responded_at < f.until]
    groups: list[tuple[str, int | None, int | None, int | None, int]] = []
    if conn.dialect.name == "postgresql":
        day = func.to_char(func.timezone(zone.key, c.responded_at), "YYYY-MM-DD")
        q = select(day, c.nps, c.csat, c.ces, func.count()).where(*where).group_by(day, c.nps, c.csat, c.ces)
        groups = [(r[0], r[1], r[2], r[3], int(r[4])) for r in conn.execute(q)]
    else:  # SQLite deployments are small: the local day is computed here
        tally: dict[tuple[str, int | None, int | None, int | None], int] = {}
        q2 = select(c.responded_at, c.nps, c.csat, c.ces).where(*where)
        for at, n_, s_, e_ in conn.execute(q2):
            k = (at.astimezone(zone).date().isoformat(), n_, s_, e_)
            tally[k] = tally.get(k, 0) + 1
        groups = [(*k, n) for k, n in tally.items()]
    per_day: dict[str, dict[str, list[int]]] = {}
    whole: dict[str, list[int]] = {"nps": [], "csat": [], "ces": []}
    answers = 0
    for day_, n_, s_, e_, n in groups:
        bucket = per_day.setdefault(day_, {"nps": [], "csat": [], "ces": [], "n": []})
        bucket["n"].append(n)
        answers += n
        for key, value in (("nps", n_), ("csat", s_), ("ces", e_)):
            if value is not None:
                bucket[key].extend([int(value)] * n)
                whole[key].extend([int(value)] * n)
    days = [d.isoformat() for d in _days(f)]
    series = {
        "days": days,
        "nps": [nps(per_day.get(d, {}).get("nps", [])) for d in days],
        "csat": [csat(per_day.get(d, {}).get("csat", [])) for d in days],
        "ces": [ces(per_day.get(d, {}).get("ces", [])) for d in days],
        "answers": [sum(per_day.get(d, {}).get("n", [])) for d in days],
    }
    return {
        "series": series,
        "total": {
            "answers": answers,
            "nps": nps(whole["nps"]),
            "nps_n": len(whole["nps"]),
            "csat": csat(whole["csat"]),
            "csat_n": len(whole["csat"]),
            "ces": ces(whole["ces"]),
            "ces_n": len(whole["ces"]),
        },
        "nps_histogram": [whole["nps"].count(i) for i in range(11)],
    }


# ---------------------------------------------------------------- answers and invitations


def answers_query(conn: Connection, me: Principal, f: Filters, types: Mapping[str, str]) -> Select[Any]:
    """The answered invitations of the filters, newest answer first (no limit)."""
    c = invitations.c
    where = [*scoped(me, f), c.status == "responded", c.responded_at >= f.since, c.responded_at < f.until]
    if f.metric:
        col = c[f.metric]
        where.append(col.is_not(None))
        if f.low is not None:
            where.append(col >= f.low)
        if f.high is not None:
            where.append(col <= f.high)
    if f.question:
        value = c.scores[f.question]
        pg = conn.dialect.name == "postgresql"
        # SQLite's item of a JSON column is JSON_QUOTE(...): 'null' for a missing key, never NULL
        kind = func.jsonb_typeof(value) if pg else func.json_type(c.scores, f'$."{f.question}"')
        where.append(kind.is_not(None))
        if not f.metric and (f.low is not None or f.high is not None):
            # a scored question: its answers are whole numbers (anything else is left out)
            where.append(kind == ("number" if pg else "integer"))
            number = value.as_integer()
            if f.low is not None:
                where.append(number >= f.low)
            if f.high is not None:
                where.append(number <= f.high)
    return select(invitations).where(*where).order_by(c.responded_at.desc(), c.id.desc())


def invitations_query(me: Principal, f: Filters) -> Select[Any]:
    """The invitations of the period behind one step of the funnel or one reason, newest first."""
    c = invitations.c
    where = [*scoped(me, f), c.created_at >= f.since, c.created_at < f.until]
    stage = stage_clause(f.stage)
    if stage is not None:
        where.append(stage)
    if f.reason == "waiting":
        where.append(stage_clause("waiting"))  # type: ignore[arg-type]
    elif f.reason == "unknown":
        where.append(c.reason.is_(None))
    elif f.reason:
        where.append(c.reason == f.reason)
    return select(invitations).where(*where).order_by(c.created_at.desc(), c.id.desc())


def after_cursor(q: Select[Any], column: Any, cursor: str | None) -> Select[Any]:
    """Keyset pagination: the rows after ``cursor`` (``<iso time>|<id>``) in ``(column, id)`` desc."""
    if not cursor:
        return q
    at_text, _, inv_id = cursor.partition("|")
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise FilterError(400, "after: not a cursor of this page") from None
    if at.tzinfo is None or not _ID.match(inv_id or ""):
        raise FilterError(400, "after: not a cursor of this page")
    c = invitations.c
    return q.where(or_(column < at, and_(column == at, c.id < inv_id)))


def cursor_of(row: Mapping[str, Any], key: str) -> str:
    return f"{row[key].isoformat()}|{row['id']}"


def page_size(value: str | None) -> int:
    n = _int("limit", value, 1, MAX_PAGE)
    return PAGE_SIZE if n is None else n


def customer_invitations(conn: Connection, me: Principal, customer_id: str, limit: int = 50) -> Sequence[Any]:
    """One customer's invitations in the principal's scope, newest first."""
    c = invitations.c
    q = (
        select(invitations)
        .where(me.clause(c.store), c.customer_id == customer_id)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(limit)
    )
    return conn.execute(q).mappings().all()
