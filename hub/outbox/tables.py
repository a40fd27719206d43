"""The tables that serve the outbox besides ``outbox`` itself (migration ``0005_delivery``, on the
delivery feature's branch: only delivery reads and writes them, through this package).

- ``delivery_buckets``: one row per rate budget (destination, or destination + recipient); the row
  every process locks (``SELECT ... FOR UPDATE``) while it reserves sends, and where a platform
  block (DingTalk 130101: ten minutes) is remembered in ``blocked_until``.
- ``delivery_sends``: the sliding-window log of reserved sends per bucket (pruned as it ages).
- ``outbox_batches``: which outbox rows were combined into one digest, so a digest that is retried
  (or re-claimed after a crash) is sent again with the same members and the same idempotency key.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from hub.store.schema import BigId, UTCDateTime, metadata

delivery_buckets = Table(
    "delivery_buckets",
    metadata,
    Column("bucket", String(255), primary_key=True),
    Column("blocked_until", UTCDateTime()),
    Column("reason", String(255)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

delivery_sends = Table(
    "delivery_sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("bucket", String(255), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_delivery_sends_bucket_at", "bucket", "at"),
)

outbox_batches = Table(
    "outbox_batches",
    metadata,
    Column("outbox_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("batch_key", String(64), nullable=False),
    Index("ix_outbox_batches_key", "batch_key"),
)
