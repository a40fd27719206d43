"""delivery: rate budgets shared by processes, send log, digest membership

Revision ID: 0005_delivery
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import UTCDateTime

revision = "0005_delivery"
down_revision = "0001_foundation"
branch_labels = ("delivery",)
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_buckets",
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("blocked_until", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bucket"),
    )
    op.create_table(
        "delivery_sends",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_delivery_sends_bucket_at", "delivery_sends", ["bucket", "at"])
    op.create_table(
        "outbox_batches",
        sa.Column("outbox_id", _ID, nullable=False),
        sa.Column("batch_key", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("outbox_id"),
    )
    op.create_index("ix_outbox_batches_key", "outbox_batches", ["batch_key"])


def downgrade() -> None:
    op.drop_index("ix_outbox_batches_key", table_name="outbox_batches")
    op.drop_table("outbox_batches")
    op.drop_index("ix_delivery_sends_bucket_at", table_name="delivery_sends")
    op.drop_table("delivery_sends")
    op.drop_table("delivery_buckets")
