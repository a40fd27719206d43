"""feedback: cases, case_touchpoints, case_events

Revision ID: 0007_feedback
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import UTCDateTime

revision = "0007_feedback"
down_revision = "0001_foundation"
branch_labels = ("feedback",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("touchpoint_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(36)),
        sa.Column("store", sa.String(128)),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("ack_due_at", UTCDateTime(), nullable=False),
        sa.Column("resolve_due_at", UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime()),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("resolved_at", UTCDateTime()),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("closed_at", UTCDateTime()),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("warned", sa.Boolean, nullable=False),
        sa.Column("reminders", sa.Integer, nullable=False),
        sa.Column("resolve_stage", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("next_action_at", UTCDateTime()),
        sa.Column("touchpoints", sa.Integer, nullable=False),
        sa.Column("recovered", sa.Boolean),
        sa.Column("doc", sa.JSON, nullable=False),
    )
    op.create_index("ix_cases_due", "cases", ["status", "next_action_at"])
    op.create_index("ix_cases_customer_store", "cases", ["customer_id", "store", "status"])
    op.create_table(
        "case_touchpoints",
        sa.Column("touchpoint_id", sa.String(36), primary_key=True),
        sa.Column("case_id", BigId, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_case_touchpoints_case", "case_touchpoints", ["case_id"])
    op.create_table(
        "case_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("case_id", BigId, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_case_events_case", "case_events", ["case_id", "id"])


def downgrade() -> None:
    op.drop_table("case_events")
    op.drop_table("case_touchpoints")
    op.drop_table("cases")
