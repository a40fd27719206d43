"""Console accounts: users and argon2id passwords, browser sessions, API tokens, the audit log.

Secrets are never stored in clear: a session cookie and an API token are random 32-byte values
whose SHA-256 the store keeps, a password its argon2id hash (argon2-cffi's defaults, RFC 9106's
low-memory profile). Lookups by digest take the same time whatever matches.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update

from hub.console.schema import console_audit, console_sessions, console_tokens, console_user_links, console_users
from hub.console.scope import OrgTree, ScopeError
from hub.store import Store

#: the prefix of API tokens, so that a leaked one is recognisable (secret scanners, logs)
TOKEN_PREFIX = "cxt_"  # noqa: S105 (a prefix, not a token)

_hasher = PasswordHasher()
#: a hash to verify against when the login is unknown, so that both cases take the same time
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

MIN_PASSWORD_LENGTH = 10
#: the platforms a console user may sign in through (``console.oauth``)
PROVIDERS = ("dingtalk", "feishu", "wecom")
#: characters of generated initial passwords: no look-alikes (0/O, 1/l/I), easy to read out
_PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI") + "-_.!"
#: a token's last use is written at most this often (a script calling every second writes once a minute)
TOKEN_TOUCH = timedelta(minutes=1)


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
    last_login_at: datetime | None = None

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
            last_login_at=row.get("last_login_at"),
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


def generate_password(length: int = 16) -> str:
    """A strong random initial password (about 95 bits at 16 characters)."""
    while True:
        candidate = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


@dataclass(frozen=True)
class TokenInfo:
    """One API token as lists show it: never the token itself (the store keeps only its digest)."""

    id: int
    user_id: int
    login: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Link:
    """A platform account that signs in as a console user."""

    provider: str
    subject: str
    user_id: int
    created_at: datetime


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

    def page_users(self, *, after: str | None = None, limit: int = 100) -> list[User]:
        """Users by login, ``limit`` (at most 200) after the login ``after`` (keyset pagination)."""
        q = select(console_users).order_by(console_users.c.login).limit(max(1, min(limit, 200)))
        if after:
            q = q.where(console_users.c.login > after)
        with self.store.connect() as conn:
            return [User.of(r) for r in conn.execute(q).mappings().all()]

    def require_user(self, login: str) -> User:
        """The user ``login``, or :class:`AccountError` naming it."""
        user = self.find_user(login)
        if user is None:
            raise AccountError(f"no console user {login!r}")
        return user

    def set_disabled(self, user_id: int, disabled: bool, *, actor: str) -> User:
        """Disable (ending every session at once; tokens stop working too) or enable a user."""
        user = self.get_user(user_id)
        now = self.store.clock()
        with self.store.begin() as conn:
            conn.execute(update(console_users).where(console_users.c.id == user_id).values(disabled=disabled))
            if disabled:
                conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user_id))
            audit(conn, now, actor, "user.disable" if disabled else "user.enable", f"user:{user.login}", {})
        return self.get_user(user_id)

    def reset_password(self, user_id: int, *, actor: str, password: str | None = None) -> str:
        """A new initial password (generated unless given) that must be changed at the next sign-in;
        every session of the user ends. Returns the password, to be shown once."""
        user = self.get_user(user_id)
        new = password if password is not None else generate_password()
        check_password_strength(new, user.login)
        now = self.store.clock()
        with self.store.begin() as conn:
            conn.execute(
                update(console_users)
                .where(console_users.c.id == user_id)
                .values(password_hash=_hasher.hash(new), must_change_password=True, password_changed_at=now)
            )
            n = conn.execute(delete(console_sessions).where(console_sessions.c.user_id == user_id)).rowcount or 0
            audit(conn, now, actor, "user.password_reset", f"user:{user.login}", {"sessions_ended": n})
        return new

    def sessions_of(self, user_id: int) -> int:
        """How many live sessions a user has."""
        now = self.store.clock()
        with self.store.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(console_sessions)
                    .where(console_sessions.c.user_id == user_id, console_sessions.c.expires_at > now)
                ).scalar_one()
            )

    def session_counts(self, user_ids: Iterable[int]) -> dict[int, int]:
        """Live sessions per user, for a page of users (one query)."""
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        now = self.store.clock()
        t = console_sessions
        with self.store.connect() as conn:
            rows = conn.execute(
                select(t.c.user_id, func.count())
                .where(t.c.user_id.in_(ids), t.c.expires_at > now)
                .group_by(t.c.user_id)
            ).all()
        return {int(uid): int(n) for uid, n in rows}

    # -- platform sign-in links ----------------------------------------------------------------
    def link(self, user_id: int, provider: str, subject: str, *, actor: str) -> Link:
        """Let the platform account ``subject`` of ``provider`` sign in as the user."""
        if provider not in PROVIDERS:
            raise AccountError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
        subject = subject.strip()
        if not subject or len(subject) > 128:
            raise AccountError(f"{provider} user id {subject!r}: 1-128 characters")
        user = self.get_user(user_id)
        now = self.store.clock()
        t = console_user_links
        with self.store.begin() as conn:
            taken = conn.execute(select(t.c.user_id).where(t.c.provider == provider, t.c.subject == subject)).first()
            if taken is not None:
                if taken[0] == user_id:
                    raise AccountError(f"{provider} user {subject!r} is already linked to {user.login!r}")
                raise AccountError(f"{provider} user {subject!r} is already linked to another console user")
            conn.execute(insert(t).values(provider=provider, subject=subject, user_id=user_id, created_at=now))
            audit(conn, now, actor, "user.link", f"user:{user.login}", {"provider": provider})
        return Link(provider, subject, user_id, now)

    def unlink(self, user_id: int, provider: str, subject: str, *, actor: str) -> bool:
        user = self.get_user(user_id)
        t = console_user_links
        now = self.store.clock()
        with self.store.begin() as conn:
            n = (
                conn.execute(
                    delete(t).where(t.c.provider == provider, t.c.subject == subject, t.c.user_id == user_id)
                ).rowcount
                or 0
            )
            if n:
                audit(conn, now, actor, "user.unlink", f"user:{user.login}", {"provider": provider})
        return bool(n)

    def links_of(self, user_ids: Iterable[int]) -> dict[int, list[Link]]:
        ids = sorted(set(user_ids))
        out: dict[int, list[Link]] = {i: [] for i in ids}
        if not ids:
            return out
        t = console_user_links
        with self.store.connect() as conn:
            rows = conn.execute(select(t).where(t.c.user_id.in_(ids)).order_by(t.c.provider, t.c.subject)).mappings()
            for r in rows:
                out[r["user_id"]].append(Link(r["provider"], r["subject"], r["user_id"], r["created_at"]))
        return out

    def linked_user(self, provider: str, subjects: Iterable[str]) -> User | None:
        """The user one of the platform's ids of a person is linked to (the first that is), or None."""
        t = console_user_links
        wanted = [s for s in subjects if s]
        if not wanted:
            return None
        with self.store.connect() as conn:
            rows = conn.execute(
                select(t.c.subject, console_users)
                .join(console_users, console_users.c.id == t.c.user_id)
                .where(t.c.provider == provider, t.c.subject.in_(wanted))
            ).mappings()
            found = {r["subject"]: User.of(r) for r in rows}
        return next((found[s] for s in wanted if s in found), None)

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
                    select(console_tokens, console_users, console_tokens.c.id.label("token_id"))
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
        if row["last_used_at"] is None or now - row["last_used_at"] >= TOKEN_TOUCH:
            with self.store.begin() as conn:
                conn.execute(
                    update(console_tokens).where(console_tokens.c.id == row["token_id"]).values(last_used_at=now)
                )
        return User.of({**row, "id": row["user_id"]})

    def create_token(
        self, user_id: int, name: str, days: float | None = 90, *, actor: str = "system"
    ) -> tuple[int, str]:
        """A new API token for the user: (its id, the token). The token is shown once and kept only
        as its digest; ``days`` None makes one that does not expire."""
        user = self.get_user(user_id)
        name = name.strip()
        if not name or len(name) > 128:
            raise AccountError(f"token name {name!r}: 1-128 characters")
        if days is not None and not 0 < days <= 3650:
            raise AccountError(f"token lifetime {days} days: between 1 and 3650, or none")
        if user.disabled:
            raise AccountError(f"console user {user.login!r} is disabled")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.store.clock()
        with self.store.begin() as conn:
            key = conn.execute(
                insert(console_tokens).values(
                    user_id=user_id,
                    name=name,
                    token_hash=digest(token),
                    created_at=now,
                    expires_at=now + timedelta(days=days) if days is not None else None,
                )
            ).inserted_primary_key
            assert key is not None
            token_id = int(key[0])
            audit(conn, now, actor, "token.create", f"user:{user.login}", {"token": token_id, "days": days})
        return token_id, token

    def revoke_token(self, token_id: int, *, actor: str = "system") -> bool:
        """Revoke a token at once; False when there is no such live token."""
        now = self.store.clock()
        t = console_tokens
        with self.store.begin() as conn:
            n = (
                conn.execute(
                    update(t).where(t.c.id == token_id, t.c.revoked_at.is_(None)).values(revoked_at=now)
                ).rowcount
                or 0
            )
            if n:
                audit(conn, now, actor, "token.revoke", f"token:{token_id}", {})
        return bool(n)

    def list_tokens(self, user_id: int | None = None, *, limit: int = 200) -> list[TokenInfo]:
        """Tokens, newest first (one user's, or everyone's), at most ``limit`` (≤ 200)."""
        t, u = console_tokens, console_users
        q = select(t, u.c.login).join(u, u.c.id == t.c.user_id).order_by(t.c.id.desc()).limit(max(1, min(limit, 200)))
        if user_id is not None:
            q = q.where(t.c.user_id == user_id)
        with self.store.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            TokenInfo(
                id=r["id"],
                user_id=r["user_id"],
                login=r["login"],
                name=r["name"],
                created_at=r["created_at"],
                expires_at=r["expires_at"],
                last_used_at=r["last_used_at"],
                revoked_at=r["revoked_at"],
            )
            for r in rows
        ]

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


__all__ = [
    "PROVIDERS",
    "TOKEN_PREFIX",
    "AccountError",
    "Accounts",
    "Link",
    "ScopeError",
    "TokenInfo",
    "User",
    "audit",
    "digest",
    "generate_password",
]
