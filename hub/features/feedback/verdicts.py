"""What staff say about the detector, and the topics of every judged touchpoint (migration
``0014_feedback_learning``).

- ``feedback_labels``: a verdict of staff on a case or a touchpoint, kept as a labelled example
  with who, how and when: ``not_negative`` (a false alarm), ``wrong_topic`` (with the right topics),
  ``missed`` (a negative touchpoint that opened no case). ``cxhub model train`` learns from them.
- ``feedback_topics``: one row per (touchpoint, topic) with its polarity and span, and the scores
  the touchpoint carried: NPS / CSAT / rating by topic, and the top negative topics per store and
  week (``cxhub feedback drivers``).

The text of a label is masked (phone numbers, ids) before it is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, String, Table, Text, func, select
from sqlalchemy.engine import Connection

from hub.features.feedback.detection import Verdict
from hub.model import TouchpointEvent
from hub.privacy import mask_text
from hub.store import insert_ignore
from hub.store.schema import BigId, UTCDateTime, metadata

VERDICTS = ("not_negative", "wrong_topic", "missed", "negative")

feedback_labels = Table(
    "feedback_labels",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("touchpoint_id", String(36)),
    Column("case_id", BigId),
    Column("text", Text, nullable=False),
    Column("negative", Boolean),  # the label for the sentiment model (None: topics only)
    Column("topics", JSON, nullable=False),  # {"wrong": [...], "right": [...]}
    Column("verdict", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("via", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("note", Text),
    Index("ix_feedback_labels_at", "at"),
)

feedback_topics = Table(
    "feedback_topics",
    metadata,
    Column("touchpoint_id", String(36), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Column("polarity", String(8), nullable=False),
    Column("span", Text),
    Column("source", String(64), nullable=False),
    Column("store", String(128)),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("rating5", Float),
    Column("nps", Integer),
    Column("csat", Integer),
    Index("ix_feedback_topics_store_at", "store", "occurred_at"),
)


class VerdictError(ValueError):
    """A staff verdict that cannot be stored (unknown verdict, no text)."""


def record_label(
    conn: Connection,
    *,
    verdict: str,
    text: str,
    actor: str,
    via: str,
    now: datetime,
    touchpoint_id: str | None = None,
    case_id: int | None = None,
    wrong_topics: Sequence[str] = (),
    right_topics: Sequence[str] = (),
    note: str | None = None,
) -> int:
    """Store one staff verdict as a labelled example; returns its id."""
    if verdict not in VERDICTS:
        raise VerdictError(f"unknown verdict {verdict!r}; use {', '.join(VERDICTS)}")
    if not text.strip():
        raise VerdictError("a verdict needs the text it judges (the touchpoint has none)")
    negative = {"not_negative": False, "missed": True, "negative": True}.get(verdict)
    row = conn.execute(
        feedback_labels.insert().returning(feedback_labels.c.id),
        {
            "touchpoint_id": touchpoint_id,
            "case_id": case_id,
            "text": mask_text(text)[:4000],
            "negative": negative,
            "topics": {"wrong": list(wrong_topics), "right": list(right_topics)},
            "verdict": verdict,
            "actor": actor[:128],
            "via": via[:16],
            "at": now,
            "note": note,
        },
    ).one()
    return int(row[0])


def store_topics(conn: Connection, events: Sequence[TouchpointEvent], verdicts: Sequence[Verdict]) -> int:
    """One ``feedback_topics`` row per topic of each judged event (a replayed event adds nothing)."""
    rows: list[dict[str, Any]] = []
    for ev, v in zip(events, verdicts, strict=True):
        if not v.topics:
            continue
        fb = ev.feedback
        r5 = fb.rating5 if fb is not None else None
        for tag in v.topics:
            rows.append(
                {
                    "touchpoint_id": ev.id,
                    "topic": tag.topic,
                    "polarity": tag.polarity[:8],
                    "span": mask_text(tag.span)[:500],
                    "source": ev.source,
                    "store": ev.org.store,
                    "occurred_at": ev.occurred_at,
                    "rating5": float(r5) if r5 is not None else None,
                    "nps": fb.nps if fb is not None else None,
                    "csat": fb.csat if fb is not None else None,
                }
            )
    for row in rows:
        conn.execute(insert_ignore(conn, feedback_topics, ["touchpoint_id", "topic"]).values(**row))
    return len(rows)


def labels(conn: Connection, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every stored staff verdict, oldest first."""
    q = select(feedback_labels).order_by(feedback_labels.c.id)
    if since is not None:
        q = q.where(feedback_labels.c.at >= since)
    return [dict(r) for r in conn.execute(q).mappings()]


@dataclass
class Driver:
    """A topic's weight in one store and week."""

    store: str | None
    week: str  # ISO year-week, 2026-W49
    topic: str
    negative: int
    total: int
    avg_rating5: float | None
    avg_nps: float | None
    avg_csat: float | None


def drivers(conn: Connection, until: datetime, weeks: int = 4, top: int = 5) -> list[Driver]:
    """The top negative topics per store and ISO week over the last ``weeks`` weeks, with the
    average scores of the touchpoints that named them."""
    since = until - timedelta(weeks=weeks)
    t = feedback_topics.c
    q = select(
        t.store,
        t.occurred_at,
        t.topic,
        t.polarity,
        t.rating5,
        t.nps,
        t.csat,
    ).where(t.occurred_at >= since, t.occurred_at <= until)
    acc: dict[tuple[str | None, str, str], list[Any]] = {}
    for store, at, topic, polarity, r5, nps, csat in conn.execute(q):
        year, week, _ = at.isocalendar()
        key = (store, f"{year}-W{week:02d}", topic)
        a = acc.setdefault(key, [0, 0, [], [], []])
        a[1] += 1
        a[0] += polarity == "negative"
        for i, v in ((2, r5), (3, nps), (4, csat)):
            if v is not None:
                a[i].append(float(v))
    out = [
        Driver(
            store,
            week,
            topic,
            a[0],
            a[1],
            *(round(sum(vals) / len(vals), 2) if vals else None for vals in a[2:]),
        )
        for (store, week, topic), a in acc.items()
    ]
    out.sort(key=lambda d: (d.store or "", d.week, -d.negative, -d.total, d.topic))
    kept: list[Driver] = []
    count: dict[tuple[str | None, str], int] = {}
    for d in out:
        k = (d.store, d.week)
        if d.negative and count.get(k, 0) < top:
            count[k] = count.get(k, 0) + 1
            kept.append(d)
    return kept


def topic_counts(conn: Connection) -> dict[str, int]:
    """How many touchpoints named each topic (all time)."""
    t = feedback_topics.c
    return {topic: int(n) for topic, n in conn.execute(select(t.topic, func.count()).group_by(t.topic))}


class StaffVerdicts:
    """Staff's word on the detector, from the card, the signed link or the CLI: each verdict is a
    labelled example (``feedback_labels``) and a line in the case's audit trail."""

    def __init__(self, service: Any):
        self.service = service  # CaseService: its store, clock, open_or_join and audit

    def _touchpoint(self, conn: Connection, touchpoint_id: str) -> TouchpointEvent:
        from hub.store.schema import touchpoints

        doc = conn.execute(select(touchpoints.c.doc).where(touchpoints.c.id == touchpoint_id)).scalar()
        if doc is None:
            raise VerdictError(f"no touchpoint {touchpoint_id!r}")
        return TouchpointEvent.model_validate(doc)

    def on_case(
        self,
        case_id: int,
        verdict: str,
        *,
        actor: str,
        via: str,
        wrong_topics: Sequence[str] = (),
        right_topics: Sequence[str] = (),
        note: str | None = None,
    ) -> int:
        """``not_negative`` or ``wrong_topic`` on a case (its first touchpoint's text); returns the
        label's id. The case itself is left as it is: staff resolve or close it as usual."""
        if verdict not in ("not_negative", "wrong_topic"):
            raise VerdictError(f"a case takes the verdict not_negative or wrong_topic, not {verdict!r}")
        now = self.service.clock()
        with self.service.store.begin() as conn:
            case = self.service._row(conn, case_id)
            return self.label_case(
                conn,
                case,
                verdict,
                actor=actor,
                via=via,
                now=now,
                wrong_topics=wrong_topics,
                right_topics=right_topics,
                note=note,
            )

    def label_case(
        self,
        conn: Connection,
        case: dict[str, Any],
        verdict: str,
        *,
        actor: str,
        via: str,
        now: datetime,
        wrong_topics: Sequence[str] = (),
        right_topics: Sequence[str] = (),
        note: str | None = None,
    ) -> int:
        """:meth:`on_case` inside ``conn`` (a card tap or a link's "不是差评", in the case's own
        transaction): the label and the audit entry; returns the label's id."""
        case_id = case["id"]
        try:
            ev = self._touchpoint(conn, case["touchpoint_id"])
            text = (ev.feedback.text if ev.feedback else None) or ""
        except VerdictError:  # a touchpoint forgotten since (retention): the case keeps an excerpt
            text = str((case["doc"].get("summary") or {}).get("text") or "")
        label_id = record_label(
            conn,
            verdict=verdict,
            text=text,
            actor=actor,
            via=via,
            now=now,
            touchpoint_id=case["touchpoint_id"],
            case_id=case_id,
            wrong_topics=wrong_topics,
            right_topics=right_topics,
            note=note,
        )
        detail = {"verdict": verdict, "label": label_id}
        if wrong_topics or right_topics:
            detail |= {"wrong_topics": list(wrong_topics), "right_topics": list(right_topics)}
        self.service.audit(conn, case_id, "verdict", actor, via, now, detail, note)
        return label_id

    def missed(self, touchpoint_id: str, *, actor: str, via: str, note: str | None = None) -> tuple[int, int]:
        """A negative touchpoint the detector let through: label it and open (or join) a case for
        it, severity medium. Returns (label id, case id)."""
        now = self.service.clock()
        with self.service.store.begin() as conn:
            ev = self._touchpoint(conn, touchpoint_id)
            text = (ev.feedback.text if ev.feedback else None) or ""
            label_id = record_label(
                conn, verdict="missed", text=text, actor=actor, via=via, now=now, touchpoint_id=ev.id, note=note
            )
            verdict = self.service.detector.judge(ev)
            escalated = Verdict(
                True,
                "high" if verdict.severity == "high" else "medium",
                [*verdict.reasons, f"escalated by {actor} ({via}): missed by the detector"],
                verdict.keywords,
                verdict.sentiment,
                verdict.probability,
                verdict.topics,
                verdict.why,
            )
            case_id = self.service.open_or_join(conn, ev, escalated, now)
        return label_id, case_id
