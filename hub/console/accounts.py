"""Console accounts: users and argon2id passwords, browser sessions, API tokens, the audit log.

Secrets are never stored in clear: a session cookie and an API token are random 32-byte values
whose SHA-256 the store keeps, a password its argon2id hash (argon2-cffi's defaults, RFC 9106's
low-memory profile). Lookups by digest take the same time whatever matches.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update

from hub.console.schema import console_audit, console_sessions, console_tokens, console_users
from hub.console.scope import OrgTree, ScopeError
from hub.store import Store

#: the prefix of API tokens, so that a leaked one is recognisable (secret scanners, logs)
TOKEN_PREFIX = "cxt_"  # noqa: S105 (a prefix, not a token)

_hasher = PasswordHasher()
#: a hash to verify against when the login is unknown, so that both cases take the same time
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    """A user, password or token request that cannot be done (names the thing and the reason)."""


@dataclass(frozen=True)
class User:
    id: int
    login: str
    display_name: str
    role: str
    unit: str | None
    must_change_password: bool
    disabled: bool
    locale: str | None

    @classmethod
    def of(cls, row: Any) -> User:
        return cls(
            id=row["id"],
            login=row["login"],
            display_name=row["display_name"],
            role=row["role"],
            unit=row["unit"] or None,
            must_change_password=bool(row["must_change_password"]),
            disabled=bool(row["disabled"]),
            locale=row["locale"],
        )


def digest(secret: str) -> str:
    """SHA-256 hex of a session id or API token (the form the store keeps)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_password_strength(password: str, login: str = "") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters")
    if login and login.lower() in password.lower():
        raise AccountError("the password must not contain the login")
    if len(set(password)) < 4:
        raise AccountError("the password repeats too few characters")


class Accounts:
    """The console's users, sessions, tokens and audit log, on the hub's store."""

    def __init__(self, store: Store, *, session_hours: float = 12, idle_minutes: float = 120):
        self.store = store
        self.session_ttl = timedelta(hours=session_hours)
        self.idle = timedelta(minutes=idle_minutes)

    # -- users ---------------------------------------------------------------------------------
    def add_user(
        self,
        login: str,
        *,
        role: str,
        tree: OrgTree,
        unit: str | None = None,
        display_name: str | None = None,
        password: str | None = None,
        must_change_password: bool = True,
        actor: str = "system",
    ) -> User:
        """Create a user; ``password`` None makes an account that signs in only through a platform."""
        login = login.strip()
        if not login or len(login) > 128 or any(c.isspace() for c in login):
            raise AccountError(f"login {login!r}: 1-128 characters, no spaces")
        tree.check(role, unit)
        if password is not None:
            check_password_strength(password, login)
        now = self.store.clock()
        with self.store.begin() as conn:
            if conn.execute(select(console_users.c.id).where(console_users.c.login == login)).first():
                raise AccountError(f"login {login!r} is taken")
            uid = conn.execute(
                insert(console_users).values(
                    login=login,
                    display_name=display_name or login,
                    role=role,
                    unit=unit or None,
                    password_hash=_hasher.hash(password) if password is not None else None,
                    must_change_password=must_change_password and password is not None,
                    disabled=False,
                    created_at=now,
                    password_changed_at=now if password is not None else None,
                )
            ).inserted_primary_key
            assert uid is not None
            uid = uid[0]
            audit(conn, now, actor, "user.add", f"user:{login}", {"role": role, "unit": unit})
        return self.get_user(int(uid))

    def get_user(self, user_id: int) -> User:
        with self.store.connect() as conn:
            row = conn.execute(select(console_users).where(console_users.c.id == user_id)).mappings().first()
        if row is None:
            raise AccountError(f"no console user with id {user_id}")
        return User.of(row)

    def find_user(self, login: str) -> User | None:
        with self.store.connect() as conn:
            row = conn.execute(select(console_users).where(console_users.c.login == login)).mappings().first()
        return User.of(row) if row else None

    def list_users(self) -> list[User]:
        with self.store.connect() as conn:
            rows = conn.execute(select(console_users).order_by(console_users.c.login)).mappings().all()
        return [User.of(r) for r in rows]

    def authenticate(self, login: str, password: str) -> User | None:
        """The user whose password this is, or None (unknown login, wrong password, disabled):
        the same work in every case, so that timing tells nothing."""
        with self.store.connect() as conn:
            row = conn.execute(select(console_users).where(console_users.c.login == login)).mappings().first()
        stored = row["password_hash"] if row is not None and row["password_hash"] else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
            ok = row is not None and bool(row["password_hash"])
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or row["disabled"]:
            return None
        if _hasher.check_needs_rehash(stored):
            with self.store.begin() as conn:
                conn.execute(
                    update(console_users)
                    .where(console_users.c.id == row["id"])
                    .values(password_hash=_hasher.hash(password))
                )
        return User.of(row)

    def set_password(self, user_id: int, password: str, *, actor: str, must_change: bool = False) -> None:
        user = self.get_user(user_id)
        check_password_strength(password, user.login)
        now = self.store.clock()
        with self.store.begin() as conn:
            conn.execute(
                update(console_users)
                .where(console_users.c.id == user_id)
                .values(password_hash=_hasher.hash(password), must_change_password=must_change, password_changed_at=now)
            )
            audit(conn, now, actor, "user.password", f"user:{user.login}", {})

    # -- sessions ------------------------------------------------------------------------------
    def start_session(self, user: User, *, via: str = "password") -> tuple[str, str]:
        """A new session for ``user``: (the cookie's value, the CSRF token). Always a fresh id,
        so that an id planted before the login is worth nothing (session fixation)."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.store.clock()
        with self.store.begin() as conn:
            conn.execute(
                insert(console_sessions).values(
                    id_hash=digest(sid),
                    user_id=user.id,
                    csrf=csrf,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.session_ttl,
                    via=via,
                )
            )
            conn.execute(update(console_users).where(console_users.c.id == user.id).values(last_login_at=now))
        return sid, csrf

    def session_user(self, sid: str) -> tuple[User, str] | None:
        """The user and CSRF token of a live session, or None (unknown, expired, idle, disabled)."""
        if not sid or len(sid) > 128:
            return None
        now = self.store.clock()
        with self.store.connect() as conn:
            row = (
                conn.execute(
                    select(console_sessions, console_users)
                    .join(console_users, console_users.c.id == console_sessions.c.user_id)
                    .where(console_sessions.c.id_hash == digest(sid))
                )
                .mappings()
                .first()
            )
        if row is None or row["disabled"] or row["expires_at"] <= now or row["last_seen_at"] + self.idle <= now:
            return None
        if now - row["last_seen_at"] > timedelta(minutes=1):  # one write a minute at most per session
            with self.store.begin() as conn:
                conn.execute(
                    update(console_sessions).where(console_sessions.c.id_hash == digest(sid)).values(last_seen_at=now)
                )
        return User.of({**row, "id": row["user_id"]}), row["csrf"]

    def end_session(self, sid: str) -> None:
        with self.store.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == digest(sid)))

    def end_all_sessions(self, user_id: int) -> int:
        with self.store.begin() as conn:
            return conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user_id)).rowcount or 0

    # -- API tokens ----------------------------------------------------------------------------
    def token_user(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        now = self.store.clock()
        with self.store.connect() as conn:
            row = (
                conn.execute(
                    select(console_tokens, console_users)
                    .join(console_users, console_users.c.id == console_tokens.c.user_id)
                    .where(console_tokens.c.token_hash == digest(token))
                )
                .mappings()
                .first()
            )
        if row is None or row["disabled"] or row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= now:
            return None
        return User.of({**row, "id": row["user_id"]})

    def sessions_count(self) -> int:
        with self.store.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(console_sessions)).scalar_one())


def audit(
    conn: Connection,
    at: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    *,
    store: str | None = None,
) -> None:
    """One line of the audit log, in the caller's transaction. ``detail`` must hold ids and
    counts, never personal data (the audit outlives a forgotten customer)."""
    conn.execute(
        insert(console_audit).values(
            at=at, actor=actor, action=action, target=target, store=store, detail=dict(detail or {})
        )
    )


__all__ = ["TOKEN_PREFIX", "AccountError", "Accounts", "ScopeError", "User", "audit", "digest"]
