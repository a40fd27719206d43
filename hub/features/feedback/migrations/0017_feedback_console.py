"""feedback: indexes for the console's case board (by store, state and opening time)

Revision ID: 0017_feedback_console
Revises: 0014_feedback_learning
"""

from alembic import op

revision = "0017_feedback_console"
down_revision = "0014_feedback_learning"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the board of a store, district or region: its stores' cases of a state, newest first
    op.create_index("ix_cases_store_status_opened", "cases", ["store", "status", "opened_at"])
    # HQ's board of a state (open cases, newest first) and the SLA counts
    op.create_index("ix_cases_status_opened", "cases", ["status", "opened_at"])
    # every case of a period (the week's topics, an export of all states)
    op.create_index("ix_cases_opened", "cases", ["opened_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_opened", table_name="cases")
    op.drop_index("ix_cases_status_opened", table_name="cases")
    op.drop_index("ix_cases_store_status_opened", table_name="cases")
