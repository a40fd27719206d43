"""push nonces: the receivers' replay protection, shared by every process on the store

One row per (source, timestamp, nonce, signature) a push receiver accepted, keyed by its sha256,
with the digest of the body that came with it and when it may be forgotten. A second process that
sees the same key with another body refuses the request (hub/transport/nonces.py).

Revision ID: 0012_nonces
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import UTCDateTime

revision = "0012_nonces"
down_revision = "0001_foundation"
branch_labels = ("nonces",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_nonces",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_push_nonces_expires", "push_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_push_nonces_expires", table_name="push_nonces")
    op.drop_table("push_nonces")
