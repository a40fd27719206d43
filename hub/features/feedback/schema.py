"""Tables of the feedback feature (migration ``0007_feedback``): cases, their touchpoints and the
audit trail of every transition."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from hub.store.schema import BigId, UTCDateTime, metadata

#: one case per negative touchpoint (repeats of the same customer at the same store join it)
cases = Table(
    "cases",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("status", String(16), nullable=False),  # new / acknowledged / resolved / closed
    Column("severity", String(8), nullable=False),  # low / medium / high
    Column("touchpoint_id", String(36), nullable=False),  # the touchpoint that opened it
    Column("source", String(64), nullable=False),
    Column("customer_id", String(36)),
    Column("store", String(128)),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("ack_due_at", UTCDateTime(), nullable=False),
    Column("resolve_due_at", UTCDateTime(), nullable=False),
    Column("acknowledged_at", UTCDateTime()),
    Column("acknowledged_by", String(128)),
    Column("resolved_at", UTCDateTime()),
    Column("resolved_by", String(128)),
    Column("closed_at", UTCDateTime()),
    # escalation state: highest level notified, warning sent, reminders at the top, resolve stage
    Column("level", Integer, nullable=False, default=0),
    Column("warned", Boolean, nullable=False, default=False),
    Column("reminders", Integer, nullable=False, default=0),
    Column("resolve_stage", Integer, nullable=False, default=0),
    Column("round", Integer, nullable=False, default=0),  # +1 on every reopen (fresh message keys)
    Column("next_action_at", UTCDateTime()),  # when the sweep must look at it again; None: nothing due
    Column("touchpoints", Integer, nullable=False, default=1),
    Column("recovered", Boolean),
    Column("doc", JSON, nullable=False),  # masked summary, reasons, route levels
    Index("ix_cases_due", "status", "next_action_at"),
    Index("ix_cases_customer_store", "customer_id", "store", "status"),
    # the console's board (migration 0017_feedback_console)
    Index("ix_cases_store_status_opened", "store", "status", "opened_at"),
    Index("ix_cases_status_opened", "status", "opened_at"),
    Index("ix_cases_opened", "opened_at"),
)

#: which touchpoints belong to which case (a touchpoint belongs to at most one)
case_touchpoints = Table(
    "case_touchpoints",
    metadata,
    Column("touchpoint_id", String(36), primary_key=True),
    Column("case_id", BigId, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    Index("ix_case_touchpoints_case", "case_id"),
)

#: the audit trail: who did what, when, and how (system / link / card / cli)
case_events = Table(
    "case_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("case_id", BigId, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("via", String(16), nullable=False),
    Column("note", Text),
    Column("detail", JSON, nullable=False),
    Index("ix_case_events_case", "case_id", "id"),
)

#: the negative topics of a case (of the touchpoint that opened it), with the case's store and
#: opening time: the console's topic filter and the week's top topics, by index rather than inside
#: each case's JSON (migration 0019)
case_topics = Table(
    "case_topics",
    metadata,
    Column("case_id", BigId, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Column("store", String(128)),
    Column("opened_at", UTCDateTime(), nullable=False),
    Index("ix_case_topics_topic", "topic", "case_id"),
    Index("ix_case_topics_opened", "opened_at", "store"),
)

#: the statuses of a case whose SLA clock still runs
OPEN_STATES = ("new", "acknowledged")
