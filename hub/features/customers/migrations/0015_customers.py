"""customers: customer_scores, customer_models, customer_actions

Revision ID: 0015_customers
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import KeyString, UTCDateTime

revision = "0015_customers"
down_revision = "0001_foundation"
branch_labels = ("customers",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customer_scores",
        sa.Column("customer_id", KeyString(36), primary_key=True),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("model_id", BigId),
        sa.Column("store", sa.String(128)),
        sa.Column("purchases", sa.Integer, nullable=False),
        sa.Column("first_purchase_at", UTCDateTime()),
        sa.Column("last_purchase_at", UTCDateTime()),
        sa.Column("x", sa.Integer, nullable=False),
        sa.Column("t_x", sa.Float, nullable=False),
        sa.Column("t_obs", sa.Float, nullable=False),
        sa.Column("spend", sa.Float, nullable=False),
        sa.Column("refunds", sa.Integer, nullable=False),
        sa.Column("p_alive", sa.Float),
        sa.Column("expected", sa.Float),
        sa.Column("value_at_risk", sa.Float, nullable=False),
        sa.Column("risk", sa.Float, nullable=False),
        sa.Column("previous_risk", sa.Float),
        sa.Column("insufficient", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("signals", sa.JSON, nullable=False),
    )
    op.create_index("ix_customer_scores_store_risk", "customer_scores", ["store", "risk"])
    op.create_table(
        "customer_models",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("fitted_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("customers", sa.Integer, nullable=False),
        sa.Column("log_likelihood", sa.Float),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "customer_actions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("customer_id", KeyString(36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(255)),
        sa.Column("ref", sa.String(64)),
        sa.Column("risk", sa.Float, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_customer_actions_customer", "customer_actions", ["customer_id", "at"])


def downgrade() -> None:
    op.drop_table("customer_actions")
    op.drop_table("customer_models")
    op.drop_table("customer_scores")
