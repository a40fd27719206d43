"""Personal data of the feedback feature: retention and forgetting (see :meth:`hub.feature.Feature.purge`).

A case stays for the statistics (how many, where, how fast, which topics), without its person:
when its customer is forgotten, or when it is closed and older than ``privacy.retention.touchpoints``,
it loses its customer id, the customer's words (the excerpt, the spans of its topics, the words that
made it negative), the masked customer and the order id; an open case of a forgotten customer is
closed (an audit entry ``forgotten`` says why) and its staff messages are scrubbed. The staff's
verdicts on a customer's words (``feedback_labels``) are deleted with them; the topics a touchpoint
named (``feedback_topics``, the drivers report) stay, without the span of text.

``audit`` retention: a case's audit trail older than ``privacy.retention.audit`` is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from hub.feature import Retention
from hub.features.feedback.schema import OPEN_STATES, case_events, cases
from hub.features.feedback.verdicts import feedback_labels, feedback_topics
from hub.forget import add, scrub_outbox
from hub.store.schema import outbox, touchpoints

#: what a case's summary keeps: the facts of the visit, no person and no words
_SUMMARY_KEEPS = (
    "touchpoint_id",
    "source",
    "kind",
    "channel",
    "occurred_at",
    "brand",
    "region",
    "store",
    "store_name",
    "rating",
    "rating_scale",
    "rating5",
    "nps",
    "csat",
    "ces",
    "amount",
    "items",
    "categories",
)


def scrubbed_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A case document without its customer's words or identity."""
    out = {k: v for k, v in doc.items() if k not in ("why", "summary")}
    summary = doc.get("summary") or {}
    out["summary"] = {**{k: summary[k] for k in _SUMMARY_KEEPS if k in summary}, "text": "", "customer": ""}
    if isinstance(doc.get("topics"), list):
        out["topics"] = [
            {k: v for k, v in t.items() if k not in ("span", "text", "quote")} if isinstance(t, dict) else t
            for t in doc["topics"]
        ]
    out["forgotten"] = True
    return out


def _scrub_cases(conn: Connection, rows: Sequence[Any], now: datetime, *, close: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    ids = [r.id for r in rows]
    for r in rows:
        values: dict[str, Any] = {"customer_id": None, "doc": scrubbed_doc(r.doc or {}), "updated_at": now}
        if close and r.status in OPEN_STATES:
            values.update(status="closed", closed_at=now, next_action_at=None)
            conn.execute(
                case_events.insert(),
                {
                    "case_id": r.id,
                    "at": now,
                    "action": "forgotten",
                    "actor": "system",
                    "via": "privacy",
                    "note": None,
                    "detail": {},
                },
            )
            add(counts, {"cases.closed": 1})
        conn.execute(update(cases).where(cases.c.id == r.id).values(**values))
    add(counts, {"cases.scrubbed": len(rows)})
    if ids:
        # the trail keeps who did what when; notes and details may quote the customer
        n = conn.execute(
            update(case_events).where(case_events.c.case_id.in_(ids)).values(note=None, detail={})
        ).rowcount
        add(counts, {"case_events.scrubbed": n})
        add(counts, scrub_outbox(conn, outbox.c.cause.in_([f"case:{i}" for i in ids]), now))
    return counts


def purge(conn: Connection, now: datetime, retention: Retention) -> dict[str, int]:
    """One batch of each: closed cases older than the touchpoints' retention scrubbed, verdicts on
    texts that old deleted, topic spans that old cleared, case trails older than the audit's
    retention deleted."""
    counts: dict[str, int] = {}
    cutoff = retention.cutoff("touchpoints")
    if cutoff is not None:
        c = cases.c
        rows = conn.execute(
            select(c.id, c.status, c.doc)
            .where(c.opened_at < cutoff, c.status.not_in(OPEN_STATES), c.customer_id.is_not(None))
            .limit(retention.batch)
        ).all()
        if rows:
            for key, n in _scrub_cases(conn, rows, now, close=False).items():
                add(counts, {f"touchpoints.{key}": n})
        lab = feedback_labels.c
        old = list(conn.execute(select(lab.id).where(lab.at < cutoff).limit(retention.batch)).scalars())
        if old:
            n = conn.execute(delete(feedback_labels).where(lab.id.in_(old))).rowcount
            add(counts, {"touchpoints.feedback_labels.deleted": n})
        top = feedback_topics.c
        spans = conn.execute(
            select(top.touchpoint_id, top.topic)
            .where(top.occurred_at < cutoff, top.span.is_not(None))
            .limit(retention.batch)
        ).all()
        for tid, topic in spans:
            conn.execute(update(feedback_topics).where(top.touchpoint_id == tid, top.topic == topic).values(span=None))
        add(counts, {"touchpoints.feedback_topics.span_cleared": len(spans)})
    audit_cutoff = retention.cutoff("audit")
    if audit_cutoff is not None:
        e = case_events.c
        old = list(conn.execute(select(e.id).where(e.at < audit_cutoff).limit(retention.batch)).scalars())
        if old:
            add(counts, {"audit.case_events.deleted": conn.execute(delete(case_events).where(e.id.in_(old))).rowcount})
    return counts


def forget(conn: Connection, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """The customers' cases scrubbed (open ones closed), verdicts on their words deleted, the
    spans of their topics cleared."""
    ids = list(customer_ids)
    c = cases.c
    counts: dict[str, int] = {}
    rows = conn.execute(select(c.id, c.status, c.doc).where(c.customer_id.in_(ids))).all()
    if rows:
        add(counts, _scrub_cases(conn, rows, now, close=True))
    tps = list(conn.execute(select(touchpoints.c.id).where(touchpoints.c.customer_id.in_(ids))).scalars())
    if tps:
        n = conn.execute(delete(feedback_labels).where(feedback_labels.c.touchpoint_id.in_(tps))).rowcount
        add(counts, {"feedback_labels.deleted": n})
        n = conn.execute(
            update(feedback_topics).where(feedback_topics.c.touchpoint_id.in_(tps)).values(span=None)
        ).rowcount
        add(counts, {"feedback_topics.span_cleared": n})
    return counts
