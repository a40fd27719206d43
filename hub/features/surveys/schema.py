"""The surveys feature's tables (created by migrations ``0006_surveys``, ``0016_survey_outbox_key``,
``0018_survey_console``)."""

from __future__ import annotations

from sqlalchemy import Column, Index, SmallInteger, String, Table, Text

from hub.store.schema import Doc, UTCDateTime, metadata

#: decisions that put a message in the outbox (and so count against caps)
SENT_DECISIONS = ("scheduled", "deferred")

#: statuses of invitations whose message never reached the customer (decided to send, then not
#: sent): ``expired`` (the link expired while it waited), ``cancelled`` (the customer opted out
#: meanwhile), ``failed`` (every reachable channel refused it). They do not count as sent.
UNSENT_STATUSES = ("expired", "cancelled", "failed")

#: one row per transaction a survey rule fired on, whatever was decided: ``decision`` is
#: ``scheduled`` / ``deferred`` (quiet hours moved ``send_at``) / ``suppressed``; ``reason`` is the
#: code of why (sampled_out, capped_global, capped_survey, capped_channel, quiet_hours,
#: unreachable, opted_out, excluded_open_case, stale) and ``detail`` says it in words.
#: ``status``: ``pending`` (sent or to be sent, not answered), ``responded``, ``suppressed``, or one
#: of :data:`UNSENT_STATUSES` (with the ``reason`` and ``detail`` of what happened at send time).
#: ``sent_at``: when the message was first handed to its platform (the send-time check let it
#: through). ``opened_at``: the first time the survey page was opened. ``nps`` / ``csat`` / ``ces`` and
#: ``scores`` (answers by question id; ``true`` for a free text) are copied from the response when
#: it is stored, for the console's charts and filters; its words stay in the touchpoint.
_FUNNEL = ["decision", "status", "reason", "opened_at", "sent_at", "channel", "questionnaire"]
_SCORES = ["status", "nps", "csat", "ces", "channel", "questionnaire"]

invitations = Table(
    "survey_invitations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("questionnaire", String(64), nullable=False),
    Column("transaction_id", String(36), nullable=False, unique=True),
    Column("order_id", String(128)),
    Column("customer_id", String(36)),
    Column("store", String(128)),
    Column("channel", String(32)),
    Column("destination", String(64)),
    Column("decision", String(16), nullable=False),
    Column("reason", String(32)),
    Column("detail", Text),
    Column("status", String(16), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("send_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
    Column("responded_at", UTCDateTime()),
    Column("response_id", String(36)),
    Column("outbox_key", String(255)),
    Column("doc", Doc, nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("opened_at", UTCDateTime()),
    Column("nps", SmallInteger),
    Column("csat", SmallInteger),
    Column("ces", SmallInteger),
    Column("scores", Doc),
    Index("ix_survey_invitations_customer_send", "customer_id", "send_at"),
    # the console's funnel and scores read these alone on PostgreSQL (0018)
    Index("ix_survey_invitations_created", "created_at", postgresql_include=[*_FUNNEL, "store"]),
    Index("ix_survey_invitations_outbox_key", "outbox_key"),
    Index("ix_survey_invitations_store_created", "store", "created_at", postgresql_include=_FUNNEL),
    Index("ix_survey_invitations_responded", "responded_at", postgresql_include=[*_SCORES, "store"]),
    Index("ix_survey_invitations_store_responded", "store", "responded_at", postgresql_include=_SCORES),
)
