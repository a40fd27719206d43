"""schedule: the next run time of every scheduled job, so that it survives restarts

One row per scheduled job (``sync:<source>``): when it is due next, and when it last ran. A
process that starts after a missed run runs it once at once (coalesced) instead of waiting a whole
interval (hub/store/schedule.py, hub/runner.py).

Revision ID: 0011_schedule
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import UTCDateTime

revision = "0011_schedule"
down_revision = "0001_foundation"
branch_labels = ("schedule",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("job", sa.String(length=255), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job"),
    )


def downgrade() -> None:
    op.drop_table("schedule")
