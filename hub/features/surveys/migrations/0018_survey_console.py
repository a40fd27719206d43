"""surveys: what the console's survey pages read (funnel, scores over time, answers)

- ``sent_at``: when the message was first handed to its platform (the send-time check let it
  through; the funnel's "sent" unless the invitation later failed, expired or was cancelled);
- ``opened_at``: when the customer first opened the survey page (the funnel's "opened");
- ``nps``, ``csat``, ``ces``: the response's scores, copied onto its invitation when it is stored,
  so the score charts and the score filters read narrow indexed rows instead of every response's
  JSON document (``touchpoints.doc`` is plain JSON, read whole, never queried inside);
- ``scores``: every answered question of the response by id (a number, a choice, ``true`` for a
  free text, whose words stay in the touchpoint), for the answers page's question filter;
- indexes: invitations of a period for HQ (``created_at``, rebuilt) and for a manager's stores
  (``store, created_at``), answers of a period for HQ (``responded_at``) and for a manager's stores
  (``store, responded_at``). On PostgreSQL they carry (INCLUDE) the columns the funnel and the
  score charts count, so those read the index alone (at 300k invitations / 100k answers).

Invitations answered before this revision get their scores from their response touchpoints, and
those whose message went out their ``sent_at`` from the outbox.

Revision ID: 0018_survey_console
Revises: 0016_survey_outbox_key
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from hub.store.schema import UTCDateTime

revision = "0018_survey_console"
down_revision = "0016_survey_outbox_key"
branch_labels = None
depends_on = None

#: what the funnel counts and the score charts read, carried by the period indexes on PostgreSQL
FUNNEL = ["decision", "status", "reason", "opened_at", "sent_at", "channel", "questionnaire"]
SCORES = ["status", "nps", "csat", "ces", "channel", "questionnaire"]
INDEXES = (
    ("ix_survey_invitations_created", ["created_at"], [*FUNNEL, "store"]),
    ("ix_survey_invitations_store_created", ["store", "created_at"], FUNNEL),
    ("ix_survey_invitations_responded", ["responded_at"], [*SCORES, "store"]),
    ("ix_survey_invitations_store_responded", ["store", "responded_at"], SCORES),
)


def upgrade() -> None:
    with op.batch_alter_table("survey_invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("opened_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("nps", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("csat", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("ces", sa.SmallInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("scores", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"))
        )
        batch_op.drop_index("ix_survey_invitations_created")
    for name, columns, include in INDEXES:
        op.create_index(name, "survey_invitations", columns, postgresql_include=include)
    _backfill()


def _backfill() -> None:
    """Scores of the invitations answered before this revision, from their response touchpoints;
    when the messages that went out were sent, from the outbox."""
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE survey_invitations SET sent_at = (SELECT o.sent_at FROM outbox o"
            " WHERE o.key = survey_invitations.outbox_key AND o.status = 'sent')"
            " WHERE outbox_key IS NOT NULL"
        )
    )
    inv = sa.table(
        "survey_invitations",
        sa.column("id", sa.String()),
        sa.column("response_id", sa.String()),
        sa.column("nps", sa.SmallInteger()),
        sa.column("csat", sa.SmallInteger()),
        sa.column("ces", sa.SmallInteger()),
        sa.column("scores", sa.JSON()),
    )
    tp = sa.table("touchpoints", sa.column("id", sa.String()), sa.column("doc", sa.JSON()))
    last = ""
    while True:
        rows = conn.execute(
            sa.select(inv.c.id, tp.c.doc)
            .select_from(inv.join(tp, tp.c.id == inv.c.response_id))
            .where(inv.c.id > last)
            .order_by(inv.c.id)
            .limit(1000)
        ).all()
        if not rows:
            return
        for inv_id, doc in rows:
            values = _scores(doc if isinstance(doc, dict) else {})
            conn.execute(sa.update(inv).where(inv.c.id == inv_id).values(**values))
        last = rows[-1][0]


def _scores(doc: dict[str, Any]) -> dict[str, Any]:
    # hub.features.surveys.invitations.response_scores as of this revision (a migration keeps its own)
    feedback = doc.get("feedback") or {}
    answers = (doc.get("attributes") or {}).get("answers")
    scores: dict[str, Any] = {}
    for a in answers if isinstance(answers, list) else []:
        if not isinstance(a, dict) or not isinstance(a.get("id"), str):
            continue
        kind, value = a.get("type"), a.get("value")
        number = kind in ("nps", "csat", "ces", "rating") and isinstance(value, int) and not isinstance(value, bool)
        if number or (kind in ("single", "multiple") and isinstance(value, str | list)):
            scores[a["id"]] = value
        else:
            scores[a["id"]] = True
    out: dict[str, Any] = {"scores": scores or None}
    for key in ("nps", "csat", "ces"):
        value = feedback.get(key)
        out[key] = int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return out


def downgrade() -> None:
    for name, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name="survey_invitations")
    with op.batch_alter_table("survey_invitations", schema=None) as batch_op:
        for column in ("scores", "ces", "csat", "nps", "opened_at", "sent_at"):
            batch_op.drop_column(column)
        batch_op.create_index("ix_survey_invitations_created", ["created_at"], unique=False)
