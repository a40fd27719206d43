"""One pull pass of a source: read batches after the committed state, ingest each with its state.

Guarantees
- **One run per source at a time, across processes**: a PostgreSQL store takes a session-level
  advisory lock on a connection held for the run; a SQLite store takes an ``flock`` on a file beside
  the database. Both are released by the operating system / server when the process dies
  (``kill -9``), so a crash never leaves a stale lock. A second run raises :class:`SyncBusy`.
- **Each batch commits with its cursor** (``Ingestor.ingest_stream``), so a crash re-reads at most one batch
  and dedup absorbs it.
- **Faults retry and resume**: a dropped database connection or an API outage
  (``RetriableError``, SQLAlchemy ``OperationalError``, httpx transport errors) waits with
  exponential backoff (or the platform's ``retry_after``), reloads the committed state and reads on
  from there. ``PermanentError`` / ``ConfigError`` stop at once with their message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from hub.errors import ConnectorError, RetriableError
from hub.ingest import IngestResult
from hub.runtime import Runtime
from hub.store import Store
from hub.store.cursors import load_state, reset_state

log = logging.getLogger("cxhub.sync")

try:  # POSIX; elsewhere a SQLite store falls back to an in-process lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class SyncBusy(ConnectorError):
    """Another run of this source holds its lock (in this or another process)."""


@dataclass(frozen=True)
class SyncRetry:
    """How often a failing pass is retried, and how long it waits between tries (seconds)."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before try ``attempt`` + 1: the platform's ``retry_after`` or exponential backoff."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        return min(self.cap, self.base * (2 ** (attempt - 1)))


DEFAULT_RETRY = SyncRetry()

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _sqlite_path(store: Store) -> str | None:
    db = store.engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return db


@contextlib.contextmanager
def source_lock(store: Store, source: str) -> Iterator[None]:
    """Hold the run lock of ``source``; :class:`SyncBusy` at once when someone else holds it."""
    key = f"cxhub-sync:{source}"
    if not store.is_sqlite:
        conn = store.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_id(key)}).scalar())
            conn.commit()  # session-level lock: survives the commit; no transaction stays open
            if not got:
                raise SyncBusy("another sync of this source is running (PostgreSQL advisory lock held)", target=source)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a dropped connection released it already
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_id(key)})
                    conn.commit()
        finally:
            conn.close()
        return
    path = _sqlite_path(store)
    if path is None or fcntl is None:
        with _process_locks_guard:
            lock = _process_locks.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=False):
            raise SyncBusy("another sync of this source is running in this process", target=source)
        try:
            yield
        finally:
            lock.release()
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
    lock_file = f"{path}.sync-{safe}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise SyncBusy(
                f"another sync of this source is running (lock {lock_file} held by pid {holder or '?'})",
                target=source,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _retriable(exc: BaseException) -> tuple[bool, float | None]:
    """Whether ``exc`` is worth another try, and how long the platform asked us to wait."""
    if isinstance(exc, RetriableError):
        return True, exc.retry_after
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True, None
    if isinstance(exc, OperationalError):  # the store's own connection (PostgreSQL) or a busy SQLite
        msg = str(exc.orig).lower()
        return not any(w in msg for w in ("no such", "syntax error", "does not exist", "permission denied")), None
    import httpx  # only this error path needs it: a command that never syncs does not load it

    if isinstance(exc, httpx.TransportError):
        return True, None
    return False, None


def run_sync(
    rt: Runtime,
    source: str,
    *,
    full: bool = False,
    on_batch: Callable[[int, int | None], None] | None = None,
    retry: SyncRetry = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> IngestResult:
    """Sync ``source`` once. Each batch commits with its cursor; a crash resumes after the last one.

    Raises :class:`SyncBusy` when another run of ``source`` holds the lock, and the last error when
    ``retry.attempts`` tries all failed.
    """
    src = rt.pull_source(source)
    mapping = rt.mapping(source)
    result = IngestResult()
    with source_lock(rt.store, source):
        if full:
            reset_state(rt.store, source)
        total: int | None = None
        attempt = 0
        first_pass = True
        while True:
            attempt += 1
            state = load_state(rt.store, source)
            try:
                if first_pass:
                    total = src.estimate(state)
                    if on_batch is not None:
                        on_batch(0, total)
                # after a retry, --full goes on from what the first try committed
                batches = src.read(state, full=full and first_pass)
                # closed on the way out whatever happens: the stream pauses the cyclic GC
                with contextlib.closing(
                    rt.ingestor.ingest_stream(source, mapping, batches, overlap=src.overlap_commits)
                ) as stream:
                    for res in stream:
                        result.add(res)
                        if on_batch is not None:
                            on_batch(result.read, total)
                return result
            except Exception as exc:
                ok, retry_after = _retriable(exc)
                if not ok or attempt >= retry.attempts:
                    raise
                if retry_after is not None and retry_after > retry.cap * 10:
                    raise  # blocked for long: end this run; the next scheduled one resumes
                wait = retry.delay(attempt, retry_after)
                log.warning(
                    "sync %s: %s; try %d/%d in %.1fs, resuming from the last committed batch",
                    source,
                    exc,
                    attempt + 1,
                    retry.attempts,
                    wait,
                )
                first_pass = False if load_state(rt.store, source) is not None else first_pass
                with contextlib.suppress(Exception):
                    src.close()  # drop pooled connections / clients that may be dead
                sleep(wait)
