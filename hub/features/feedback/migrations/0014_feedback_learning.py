"""feedback: feedback_labels (staff verdicts as labelled examples), feedback_topics (topics per touchpoint)

Revision ID: 0014_feedback_learning
Revises: 0007_feedback
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import UTCDateTime

revision = "0014_feedback_learning"
down_revision = "0007_feedback"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback_labels",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("touchpoint_id", sa.String(36)),
        sa.Column("case_id", BigId),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("negative", sa.Boolean),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_feedback_labels_at", "feedback_labels", ["at"])
    op.create_table(
        "feedback_topics",
        sa.Column("touchpoint_id", sa.String(36), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("polarity", sa.String(8), nullable=False),
        sa.Column("span", sa.Text),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("store", sa.String(128)),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("rating5", sa.Float),
        sa.Column("nps", sa.Integer),
        sa.Column("csat", sa.Integer),
    )
    op.create_index("ix_feedback_topics_store_at", "feedback_topics", ["store", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_topics_store_at", table_name="feedback_topics")
    op.drop_table("feedback_topics")
    op.drop_index("ix_feedback_labels_at", table_name="feedback_labels")
    op.drop_table("feedback_labels")
