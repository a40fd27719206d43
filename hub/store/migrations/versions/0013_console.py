"""console: accounts, sessions, API tokens, platform sign-in links, login attempts, audit, live feed

Revision ID: 0013_console
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

from hub.store.schema import BigId, KeyString, UTCDateTime

revision = "0013_console"
down_revision = "0001_foundation"
branch_labels = ("console",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("login", KeyString(128), nullable=False, unique=True),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(128)),
        sa.Column("password_hash", sa.Text()),
        sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("locale", sa.String(8)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("password_changed_at", UTCDateTime()),
        sa.Column("last_login_at", UTCDateTime()),
    )
    op.create_table(
        "console_user_links",
        sa.Column("provider", KeyString(16), primary_key=True),
        sa.Column("subject", KeyString(128), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_console_user_links_user", "console_user_links", ["user_id"])
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", KeyString(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
    )
    op.create_index("ix_console_sessions_user", "console_sessions", ["user_id"])
    op.create_table(
        "console_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", KeyString(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_table(
        "console_login_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("login", sa.String(128), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_console_login_attempts_login", "console_login_attempts", ["login", "at"])
    op.create_index("ix_console_login_attempts_address", "console_login_attempts", ["address", "at"])
    op.create_table(
        "console_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255)),
        sa.Column("store", sa.String(128)),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"])
    op.create_table(
        "console_feed",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("store", sa.String(128)),
        sa.Column("ref", sa.String(255)),
        sa.Column("data", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "console_feed",
        "console_audit",
        "console_login_attempts",
        "console_tokens",
        "console_sessions",
        "console_user_links",
        "console_users",
    ):
        op.drop_table(name)
