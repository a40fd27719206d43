"""Tables of the web console (migration ``0013_console``): accounts, sessions, API tokens, sign-in
links to DingTalk / Feishu / WeCom, login attempts, the audit log and the live feed.

Nothing here holds a secret in clear: session ids and API tokens are kept as SHA-256 digests (a
copy of the table lets no one in), passwords as argon2id hashes. The audit log names who did what
to which object, never a customer's personal data.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, String, Table, Text

from hub.store.schema import BigId, KeyString, UTCDateTime, metadata

#: people who sign in to the console; ``unit`` is their place in the org hierarchy (a store,
#: district or region id; empty for HQ-wide roles)
console_users = Table(
    "console_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", KeyString(128), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("unit", String(128)),
    Column("password_hash", Text),  # argon2id; None: signs in only through a platform (OAuth)
    Column("must_change_password", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("locale", String(8)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("password_changed_at", UTCDateTime()),
    Column("last_login_at", UTCDateTime()),
)

#: a platform account that signs in as a console user: (provider, subject) -> user
console_user_links = Table(
    "console_user_links",
    metadata,
    Column("provider", KeyString(16), primary_key=True),  # dingtalk / feishu / wecom
    Column("subject", KeyString(128), primary_key=True),  # the platform's user id in this corp
    Column("user_id", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_console_user_links_user", "user_id"),
)

#: signed-in browsers: the cookie carries a random id, the table its SHA-256
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", KeyString(64), primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("via", String(16), nullable=False),  # password / dingtalk / feishu / wecom
    Index("ix_console_sessions_user", "user_id"),
)

#: API tokens for scripts (``Authorization: Bearer cxt_...``), SHA-256 at rest
console_tokens = Table(
    "console_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False),
    Column("name", String(128), nullable=False),
    Column("token_hash", KeyString(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
)

#: sign-in attempts, for the rate limit (by login and by address) and the audit
console_login_attempts = Table(
    "console_login_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("login", String(128), nullable=False),
    Column("address", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_console_login_attempts_login", "login", "at"),
    Index("ix_console_login_attempts_address", "address", "at"),
)

#: who did what in the console (and the privacy commands): never personal data, only ids
console_audit = Table(
    "console_audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255)),
    Column("store", String(128)),  # the store the object belongs to, when it has one (scoped reads)
    Column("detail", JSON, nullable=False),
    Index("ix_console_audit_at", "at"),
)

#: what the live pages hear about: written in the transaction of its cause by any process,
#: read by every console's event stream (hub/console/live.py); kept an hour
console_feed = Table(
    "console_feed",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("topic", String(32), nullable=False),
    Column("store", String(128)),
    Column("ref", String(255)),
    Column("data", JSON, nullable=False),
)
