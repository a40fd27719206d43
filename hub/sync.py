"""One pull pass of a source: read batches after the committed state, ingest each with its state.

Guarantees
- **One run per source at a time, across processes**: a PostgreSQL store takes a session-level
  advisory lock on a connection held for the run; a SQLite store takes an ``flock`` on a file beside
  the database. Both are released by the operating system / server when the process dies
  (``kill -9``), so a crash never leaves a stale lock; a *vanished* holder (its host lost) loses
  the PostgreSQL lock when the server's keepalives end its session
  (:data:`hub.store.locks.SESSION_LEASE_SECONDS`). A second run raises :class:`SyncBusy`.
- **Stops between batches**: when ``stop`` is set (``cxhub run`` stopping), the run ends after the
  batch it is committing; the next run resumes from there.
- **Each batch commits with its cursor** (``Ingestor.ingest_stream``), so a crash re-reads at most one batch
  and dedup absorbs it.
- **Faults retry and resume**: a dropped database connection or an API outage
  (``RetriableError``, SQLAlchemy ``OperationalError``, httpx transport errors) waits with
  exponential backoff (or the platform's ``retry_after``), reloads the committed state and reads on
  from there. ``PermanentError`` / ``ConfigError`` stop at once with their message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, OperationalError

from hub.errors import ConnectorError, RetriableError
from hub.ingest import IngestResult
from hub.store import Store, locks
from hub.store.cursors import load_state, reset_state

if TYPE_CHECKING:  # (the console reads the pause flags below without the runtime: no cycle)
    from hub.runtime import Runtime

log = logging.getLogger("cxhub.sync")


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


def lock_name(source: str) -> str:
    """The name of ``source``'s run lock (advisory lock key / lock file)."""
    return f"cxhub-sync:{source}"


@contextlib.contextmanager
def source_lock(store: Store, source: str) -> Iterator[None]:
    """Hold the run lock of ``source``; :class:`SyncBusy` at once when someone else holds it."""
    key = lock_name(source)
    if not store.is_sqlite:
        conn = locks.lock_session(store)
        try:
            if not locks.try_advisory_lock(conn, key):
                raise SyncBusy("another sync of this source is running (PostgreSQL advisory lock held)", target=source)
            try:
                yield
            finally:
                locks.advisory_unlock(conn, key)  # a dropped connection released it already
        finally:
            conn.close()
        return
    path = locks.lock_file_path(store, f"sync-{source}")
    if path is None:
        lock = locks.process_lock(key)
        if not lock.acquire(blocking=False):
            raise SyncBusy("another sync of this source is running in this process", target=source)
        try:
            yield
        finally:
            lock.release()
        return
    fd = locks.try_file_lock(path)
    if fd is None:
        raise SyncBusy(
            f"another sync of this source is running (lock {path} held by pid {locks.file_lock_holder(path)})",
            target=source,
        )
    try:
        yield
    finally:
        locks.file_unlock(fd)


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
    stop: threading.Event | None = None,
) -> IngestResult:
    """Sync ``source`` once. Each batch commits with its cursor; a crash resumes after the last one.
    ``stop``: when set, the run ends after the batch it is committing (the process is stopping).

    Raises :class:`SyncBusy` when another run of ``source`` holds the lock, and the last error when
    ``retry.attempts`` tries all failed.
    """
    src = rt.pull_source(source)
    mapping = rt.mapping(source)
    result = IngestResult()
    # the columnar path where the source yields columns and the mapping compiles for them
    from hub.columnar.engine import ColumnarIngest, columnar_plan

    vector, why = columnar_plan(src, mapping, rt.ingestor)
    if vector is None:
        log.debug("sync %s: row path (%s)", source, why)
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
                if vector is not None:
                    read_arrow = getattr(src, "read_arrow", None)
                    columns = (read_arrow or src.read)(state, full=full and first_pass)
                    stream = ColumnarIngest(rt.ingestor).ingest_stream(source, mapping, vector, columns)
                else:
                    batches = src.read(state, full=full and first_pass)
                    stream = rt.ingestor.ingest_stream(source, mapping, batches, overlap=src.overlap_commits)
                # closed on the way out whatever happens: the stream pauses the cyclic GC
                with contextlib.closing(stream) as stream:
                    for res in stream:
                        result.add(res)
                        if on_batch is not None:
                            on_batch(result.read, total)
                        if stop is not None and stop.is_set():
                            log.info("sync %s: stopping after a committed batch; the next run resumes", source)
                            break
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


# ---------------------------------------------------------------- pause flag and last run (console)

#: the store's kv key that pauses a source's scheduled syncs (the console's pause button)
PAUSE_KEY = "sync.paused:"
#: the store's kv key of a source's last scheduled run: when, and how it ended
LAST_RUN_KEY = "sync.last:"


def paused(store: Store, source: str) -> dict[str, Any] | None:
    """Who paused ``source``'s scheduled syncs and when (``{"by": login, "at": iso}``); None when
    it runs. A manual ``cxhub sync`` still runs a paused source."""
    found = store.get(PAUSE_KEY + source)
    if found is None:
        return None
    try:
        value = json.loads(found[0])
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def set_paused(store: Store, source: str, pause: bool, *, by: str, at: datetime) -> None:
    """Pause (or resume) ``source``'s scheduled syncs; every process's scheduler reads the flag
    before each run."""
    if pause:
        store.put(PAUSE_KEY + source, json.dumps({"by": by, "at": at.isoformat()}))
    else:
        store.delete(PAUSE_KEY + source)


def record_last_run(store: Store, source: str, *, at: datetime, ok: bool, outcome: str) -> None:
    """Remember how the last scheduled run of ``source`` ended (``outcome``: the result's summary
    or the error's message, which names no secret)."""
    store.put(LAST_RUN_KEY + source, json.dumps({"at": at.isoformat(), "ok": ok, "outcome": outcome[:500]}))


def last_run(store: Store, source: str) -> dict[str, Any] | None:
    """``{"at": iso, "ok": bool, "outcome": str}`` of the last scheduled run, or None."""
    found = store.get(LAST_RUN_KEY + source)
    if found is None:
        return None
    try:
        value = json.loads(found[0])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
