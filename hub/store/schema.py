"""Tables of the store (SQLAlchemy Core). Migrations in ``hub/store/migrations`` create them.

Features that add tables (outbox budgets, invitations, cases...) add their own migration with
``down_revision`` pointing at the foundation; the store upgrades to ``heads``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: cxhub stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (queryable), JSON text elsewhere.
Doc = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER


def KeyString(length: int) -> String:
    """An identifier column (uuid text, source name, external id, identity hash...): compared in
    byte order ("C" collation) on PostgreSQL. Identifiers are never sorted for a person to read,
    and a byte compare in every index probe and insert is cheaper than the database's locale
    collation (migration 0009). SQLite compares bytes already."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


#: every raw record received, deduplicated on (source, external_id); status: stored / filtered / quarantined.
#: ``payload`` is kept only when ``store.keep_raw_payloads`` is on: raw payloads carry personal data
#: (phone numbers) in plain text; quarantined records keep theirs in ``quarantine`` for replay.
inbox = Table(
    "inbox",
    metadata,
    # the dedup key is the primary key (migration 0009 dropped a surrogate id that nothing read)
    Column("source", KeyString(64), primary_key=True),
    Column("external_id", KeyString(512), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("touchpoint_id", String(36)),
    Column("payload", JSON),
    Index("ix_inbox_source_received", "source", "received_at"),  # the console's error rate (0014)
)

#: normalised touchpoints; ``doc`` is the full TouchpointEvent, the columns are what queries need
touchpoints = Table(
    "touchpoints",
    metadata,
    Column("id", KeyString(36), primary_key=True),
    Column("source", KeyString(64), nullable=False),
    Column("external_id", String(512), nullable=False),
    Column("kind", KeyString(32), nullable=False),
    Column("channel", String(64)),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("customer_id", KeyString(36)),
    Column("store", String(128)),
    # plain json on PostgreSQL too (migration 0008): read whole, never queried inside in SQL
    Column("doc", JSON, nullable=False),
    Index("ix_touchpoints_source_occurred", "source", "occurred_at"),
    Index("ix_touchpoints_kind_occurred", "kind", "occurred_at"),
    Index("ix_touchpoints_customer", "customer_id"),
    Index("ix_touchpoints_store_occurred", "store", "occurred_at"),  # the console's charts (0014)
)

customers = Table(
    "customers",
    metadata,
    Column("id", KeyString(36), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("merged_into", String(36)),
    Column("opted_out", Boolean, nullable=False, default=False),
)

#: identity -> customer. Sensitive namespaces (phone, email) keep a keyed hash in ``value`` and the
#: reachable contact encrypted in ``contact``; never the plain value.
identities = Table(
    "identities",
    metadata,
    Column("namespace", KeyString(64), primary_key=True),
    Column("scope", KeyString(128), primary_key=True, default=""),
    Column("value", KeyString(512), primary_key=True),
    Column("customer_id", KeyString(36), nullable=False),
    Column("contact", Text),
    Column("first_seen", UTCDateTime(), nullable=False),
    Index("ix_identities_customer", "customer_id"),
    Index("ix_identities_value", "value"),  # the console's customer search (0014)
)

#: where a pull source resumes from
source_state = Table(
    "source_state",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: records that could not be used, with the reason; replayable after a fix
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("external_id", String(512)),
    Column("stage", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open / replayed
    Column("replayed_at", UTCDateTime()),
    Index("ix_quarantine_source_status", "source", "status"),
)

#: every message cxhub sends; written in the transaction of its cause, keyed for idempotency
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("destination", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending / sending / sent / failed / dead
    Column("message", JSON, nullable=False),
    Column("cause", String(255)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("last_error", Text),
    Column("receipt", Text),
    Column("locked_by", String(128)),
    Column("locked_until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_destination_status", "destination", "status"),
)

#: shared key-value store: access tokens, leases
kv = Table(
    "kv",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("expires_at", UTCDateTime()),
)

#: the push receivers' replay protection shared by every process (hub/transport/nonces.py):
#: sha256 of (source, timestamp, nonce, signature) -> the body's digest, until ``expires_at``
push_nonces = Table(
    "push_nonces",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("digest", String(32), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_push_nonces_expires", "expires_at"),
)
