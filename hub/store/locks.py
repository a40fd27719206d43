"""Locks across processes.

- **Per-customer** transaction locks: features that count what a customer was sent (caps, recovery
  invitations) serialise their decisions about one customer (:func:`lock_customers`).
- **Process-wide** named locks held for a while: the migrations (:data:`MIGRATE_LOCK`), a pull
  source's run, the scheduler's leadership (:func:`held`, :func:`lock_session`, the lock files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from hub.errors import ConfigError

if TYPE_CHECKING:
    from hub.store.engine import Store

try:  # POSIX; elsewhere a SQLite store falls back to in-process locks
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def lock_key(customer_id: str) -> int:
    """The PostgreSQL advisory lock key (signed 64 bits) that serialises one customer's caps."""
    digest = hashlib.sha256(f"cxhub-survey-customer\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_customers(conn: Connection, customer_ids: Iterable[str]) -> int:
    """Take the transaction-scoped advisory locks of these customers on PostgreSQL, in ascending key
    order (every process locks in the same order, so two batches cannot deadlock on them); they are
    released at commit / rollback. SQLite has one writer at a time already. Returns how many."""
    if conn.dialect.name != "postgresql":
        return 0
    keys = sorted({lock_key(c) for c in customer_ids})
    if keys:
        # with ORDER BY, PostgreSQL calls the volatile lock function row by row after sorting
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(k) FROM "
                "(SELECT CAST(json_array_elements_text(CAST(:keys AS json)) AS bigint) AS k) AS t ORDER BY k"
            ),
            {"keys": json.dumps(keys)},
        ).all()
    return len(keys)


# --------------------------------------------------------------------------- process-wide locks
#
# Locks that one *process* holds for a while (the migrations, a pull source's run, the scheduler's
# leadership) are PostgreSQL session-level advisory locks on a connection of their own, or on
# SQLite an ``flock`` on a file beside the database. Both end with the process: the operating
# system closes the socket / file of a killed process (``kill -9``) and the server or kernel frees
# the lock at once. What a plain session lock does not survive quickly is a *vanished host* (power
# loss, network partition): the server keeps the half-open session, and its lock, until TCP gives
# up (two hours by default). :func:`lock_session` therefore turns on TCP keepalives on both ends
# of the lock's connection, so that such a session, and its lock, end within
# :data:`SESSION_LEASE_SECONDS`: the lease of a session lock, renewed by the keepalive probes that
# a live host's kernel answers.

#: keepalive probes on a lock's connection: first after 5 s idle, then every 2 s, given up after 4
#: unanswered ones; a vanished holder's session (and its lock) ends ~13 s after its last answer
KEEPALIVE_IDLE_SECONDS = 5
KEEPALIVE_INTERVAL_SECONDS = 2
KEEPALIVE_COUNT = 4
SESSION_LEASE_SECONDS = KEEPALIVE_IDLE_SECONDS + KEEPALIVE_INTERVAL_SECONDS * KEEPALIVE_COUNT

MIGRATE_LOCK = "cxhub-migrate"


class LockTimeout(ConfigError):
    """A lock was not granted within the time allowed (another process holds it)."""


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key (signed 64 bits) of a named process-wide lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_session(store: Store) -> Connection:
    """A new connection of its own for holding session locks (PostgreSQL).

    The server probes the client after :data:`KEEPALIVE_IDLE_SECONDS` of silence and ends the
    session (releasing its advisory locks) when :data:`KEEPALIVE_COUNT` probes go unanswered;
    ``tcp_user_timeout`` bounds unacknowledged writes the same way. The connection is in
    autocommit: a session lock needs no transaction, and none stays open while it is held.
    Over a Unix socket the settings are ignored (the kernel ends a dead peer's socket anyway)."""
    conn = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    if conn.dialect.name == "postgresql":
        try:
            conn.execute(
                text(
                    "SELECT set_config('tcp_keepalives_idle', :idle, false), "
                    "set_config('tcp_keepalives_interval', :interval, false), "
                    "set_config('tcp_keepalives_count', :count, false), "
                    "set_config('tcp_user_timeout', :user_timeout, false)"
                ),
                {
                    "idle": str(KEEPALIVE_IDLE_SECONDS),
                    "interval": str(KEEPALIVE_INTERVAL_SECONDS),
                    "count": str(KEEPALIVE_COUNT),
                    "user_timeout": str(SESSION_LEASE_SECONDS * 1000),
                },
            )
        except Exception:
            conn.close()
            raise
    return conn


def try_advisory_lock(conn: Connection, name: str) -> bool:
    """Take the session-level advisory lock ``name`` on ``conn`` if it is free (PostgreSQL)."""
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(name)}).scalar())


def advisory_unlock(conn: Connection, name: str) -> None:
    """Release the session-level advisory lock ``name`` held on ``conn``; a connection that is
    gone already released it, so errors are swallowed."""
    with contextlib.suppress(Exception):
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(name)})


def lock_file_path(store: Store, name: str) -> str | None:
    """The lock file beside a SQLite database for lock ``name`` (None for an in-memory database)."""
    db = store.engine.url.database
    if fcntl is None or not db or db == ":memory:" or db.startswith("file:"):
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return f"{db}.{safe}.lock"


def try_file_lock(path: str) -> int | None:
    """``flock`` ``path`` (created when missing) without waiting; the open descriptor when granted
    (close it, or :func:`file_unlock`, to release), None when another process holds it. The
    holder's pid is written into the file, for the message of whoever waits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def file_lock_holder(path: str) -> str:
    """The pid written into a lock file by its holder ('?' when unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(64).strip() or "?"
    except OSError:
        return "?"


def file_unlock(fd: int) -> None:
    """Release and close a lock taken by :func:`try_file_lock`."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def process_lock(name: str) -> threading.Lock:
    """An in-process lock per name (SQLite in memory, where no file can be locked)."""
    with _process_locks_guard:
        return _process_locks.setdefault(name, threading.Lock())


@contextlib.contextmanager
def held(
    store: Store,
    name: str,
    *,
    timeout: float,
    poll: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the process-wide lock ``name`` (advisory lock / lock file), waiting up to ``timeout``
    seconds for it; :class:`LockTimeout` naming the lock (and the holder, on SQLite) after that.
    ``waiting(description)`` is called once when the lock is taken by someone else."""
    deadline = time.monotonic() + timeout
    told = False

    def wait_or_give_up(holder: str) -> None:
        nonlocal told
        if not told and waiting is not None:
            waiting(holder)
        told = True
        if time.monotonic() >= deadline:
            raise LockTimeout(f"lock {name!r} still held by {holder} after {timeout:g}s; try again later")
        sleep(poll)

    if not store.is_sqlite:
        conn = lock_session(store)
        try:
            while not try_advisory_lock(conn, name):
                wait_or_give_up("another process (PostgreSQL advisory lock)")
            try:
                yield
            finally:
                advisory_unlock(conn, name)
        finally:
            conn.close()
        return
    path = lock_file_path(store, name)
    if path is None:
        lock = process_lock(name)
        while not lock.acquire(blocking=False):
            wait_or_give_up("this process")
        try:
            yield
        finally:
            lock.release()
        return
    while (fd := try_file_lock(path)) is None:
        wait_or_give_up(f"pid {file_lock_holder(path)} (lock file {path})")
    try:
        yield
    finally:
        file_unlock(fd)
