"""feedback: case_topics, the negative topics of each case (the console's topic filter and the week's
top topics), filled from the cases already open

Revision ID: 0019_feedback_case_topics
Revises: 0017_feedback_console
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import UTCDateTime

revision = "0019_feedback_case_topics"
down_revision = "0017_feedback_console"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "case_topics",
        sa.Column("case_id", BigId, sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("store", sa.String(128)),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_case_topics_topic", "case_topics", ["topic", "case_id"])
    op.create_index("ix_case_topics_opened", "case_topics", ["opened_at", "store"])
    conn = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", BigId),
        sa.column("store", sa.String),
        sa.column("opened_at", UTCDateTime()),
        sa.column("doc", sa.JSON),
    )
    case_topics = sa.table(
        "case_topics",
        sa.column("case_id", BigId),
        sa.column("topic", sa.String),
        sa.column("store", sa.String),
        sa.column("opened_at", UTCDateTime()),
    )
    batch: list[dict[str, object]] = []
    for case_id, store, opened_at, doc in conn.execute(
        sa.select(cases.c.id, cases.c.store, cases.c.opened_at, cases.c.doc)
    ):
        tags = (doc or {}).get("topics") or []
        bad = {str(t.get("topic"))[:64] for t in tags if isinstance(t, dict) and t.get("polarity") == "negative"}
        batch += [
            {"case_id": case_id, "topic": topic, "store": store, "opened_at": opened_at}
            for topic in sorted(bad)
            if topic
        ]
        if len(batch) >= 1000:
            conn.execute(case_topics.insert(), batch)
            batch = []
    if batch:
        conn.execute(case_topics.insert(), batch)


def downgrade() -> None:
    op.drop_index("ix_case_topics_opened", table_name="case_topics")
    op.drop_index("ix_case_topics_topic", table_name="case_topics")
    op.drop_table("case_topics")
