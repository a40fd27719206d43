"""console indexes: what the console's core pages read at scale

- ``touchpoints (store, occurred_at)``: the overview's touchpoints per hour of a manager's stores
  (the HQ chart reads ``ix_touchpoints_kind_occurred`` with every kind of the closed list); 0009
  dropped a store-only index that nothing read, this one the console reads.
- ``identities (value)``: the customer search by a phone number's hash, an openid or a member
  number, whatever the namespace's scope (the primary key leads with namespace and scope).
- ``inbox (source, received_at)``: the connectors page's records received per source in the last
  24 hours (the error rate); the inbox's key is the dedup key, which says nothing of time.

The customer timeline reads ``ix_touchpoints_customer`` (one customer's rows, sorted in memory).

Revision ID: 0014_console_indexes
Revises: 0013_console
"""

from alembic import op

revision = "0014_console_indexes"
down_revision = "0013_console"
branch_labels = ("console_indexes",)
depends_on = None

INDEXES = (
    ("ix_touchpoints_store_occurred", "touchpoints", ["store", "occurred_at"]),
    ("ix_identities_value", "identities", ["value"]),
    ("ix_inbox_source_received", "inbox", ["source", "received_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
