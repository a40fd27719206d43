"""leaner keys on the ingest tables

- ``inbox``: the dedup key (source, external_id) becomes the primary key; the surrogate ``id``
  (a sequence call and a second index per received record) was never read.
- ``touchpoints``: ``ix_touchpoints_store`` goes; no query filters touchpoints by store (cases and
  routing keep their own store column).
- PostgreSQL: identifier columns (uuid text, source, kind, identity namespace / scope / hash,
  customer ids, inbox keys) compare in byte order, collation "C", instead of the database's
  locale: every index probe and insert compared them through the locale's collation.

Measured by ``bench/ingest.py``'s store floor (the rows of 100,000 checkouts COPY'd into a fresh
store, batches of 2,000): 45 -> 38-42 us of PostgreSQL CPU per event.

Revision ID: 0009_lean_keys
Revises: 0008_touchpoint_doc_json
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_lean_keys"
down_revision = "0008_touchpoint_doc_json"
branch_labels = None
depends_on = None

#: (table, column, length) compared in byte order on PostgreSQL; schema.KeyString in the models
KEY_COLUMNS = [
    ("inbox", "source", 64),
    ("inbox", "external_id", 512),
    ("touchpoints", "id", 36),
    ("touchpoints", "source", 64),
    ("touchpoints", "kind", 32),
    ("touchpoints", "customer_id", 36),
    ("customers", "id", 36),
    ("identities", "namespace", 64),
    ("identities", "scope", 128),
    ("identities", "value", 512),
    ("identities", "customer_id", 36),
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_touchpoints_store", table_name="touchpoints")
    if postgres:
        op.execute("ALTER TABLE inbox DROP CONSTRAINT uq_inbox_source_external")
        op.drop_column("inbox", "id")  # and its primary key
        op.create_primary_key("inbox_pkey", "inbox", ["source", "external_id"])
        for table, column, length in KEY_COLUMNS:
            op.alter_column(table, column, type_=sa.String(length, collation="C"), existing_type=sa.String(length))
    else:  # SQLite rebuilds the table to change its primary key
        with op.batch_alter_table("inbox", recreate="always") as batch:
            batch.drop_constraint("uq_inbox_source_external", type_="unique")
            batch.drop_column("id")
            batch.create_primary_key("inbox_pkey", ["source", "external_id"])


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for table, column, length in KEY_COLUMNS:
            op.alter_column(table, column, type_=sa.String(length), existing_type=sa.String(length, collation="C"))
        op.drop_constraint("inbox_pkey", "inbox", type_="primary")
        op.add_column("inbox", sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
        op.create_primary_key("inbox_pkey", "inbox", ["id"])
        op.create_unique_constraint("uq_inbox_source_external", "inbox", ["source", "external_id"])
    else:  # back to a rowid key, numbered in the order the rows were stored
        cols = "source, external_id, received_at, status, touchpoint_id, payload"
        op.execute(
            "CREATE TABLE inbox_0008 (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, source VARCHAR(64) NOT NULL, "
            "external_id VARCHAR(512) NOT NULL, received_at DATETIME NOT NULL, status VARCHAR(16) NOT NULL, "
            "touchpoint_id VARCHAR(36), payload JSON, "
            "CONSTRAINT uq_inbox_source_external UNIQUE (source, external_id))"
        )
        op.execute(f"INSERT INTO inbox_0008 ({cols}) SELECT {cols} FROM inbox ORDER BY rowid")
        op.drop_table("inbox")
        op.rename_table("inbox_0008", "inbox")
    op.create_index("ix_touchpoints_store", "touchpoints", ["store"])
