"""surveys: look an invitation up by its outbox message (send-time checks)

Revision ID: 0016_survey_outbox_key
Revises: 0006_surveys
"""

from alembic import op

revision = "0016_survey_outbox_key"
down_revision = "0006_surveys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the delivery worker finds the invitation of each survey message right before sending it
    op.create_index("ix_survey_invitations_outbox_key", "survey_invitations", ["outbox_key"])


def downgrade() -> None:
    op.drop_index("ix_survey_invitations_outbox_key", table_name="survey_invitations")
