"""Engine setup, migrations, JSON encoding, dialect-aware inserts and the shared key-value store."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import operator
import os
import re
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Engine, Table, create_engine, delete, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.errors import ConfigError
from hub.sdk.connector import Clock, utcnow
from hub.store import schema

if typing.TYPE_CHECKING:
    from hub.store.pgcopy import DeferredCopy

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.M)


@functools.cache
def _heads(folders: tuple[Path, ...]) -> frozenset[str]:
    """The head revisions of these folders, read off the files; empty when any file is not in the
    shape ``alembic revision`` writes (then the caller asks Alembic)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for folder in folders:
        for path in folder.glob("*.py"):
            if path.name.startswith("_"):
                continue
            text_ = path.read_text(encoding="utf-8")
            rev, down = _REVISION.search(text_), _DOWN.search(text_)
            if rev is None or down is None:
                return frozenset()
            revisions.add(rev.group(1))
            downs.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return frozenset(revisions - downs)


def migration_folders() -> list[Path]:
    """The core's revisions, then every installed feature's (``Feature.migrations``)."""
    from hub.registry import installed_features

    folders = [MIGRATIONS / "versions"]
    for info in installed_features():
        assert info.feature is not None
        folder = info.feature.migrations
        if folder is not None:
            folders.append(folder)
    return folders


def alembic_config() -> Any:
    """Alembic's config for the store: the core's script location, and the core's and every
    installed feature's version folders."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in migration_folders()))
    return cfg


def _default(o: Any) -> Any:
    if isinstance(o, datetime | date | time):
        return o.isoformat()
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, Enum):
        return o.value
    if isinstance(o, bytes):
        try:
            return o.decode("utf-8")
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(o).decode("ascii")}
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"cannot store a {type(o).__name__} as JSON")


class JsonText(str):
    """JSON that is already serialised: stored as is (no second encoding)."""

    __slots__ = ()


_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> str:
    """JSON for the store: datetimes, decimals, enums and bytes allowed; Chinese kept readable.

    Encoded by orjson (a batch of rows in a fraction of the stdlib's time); what orjson refuses
    and the stdlib takes (integers beyond 64 bits, nesting deeper than 254) falls back to it."""
    if isinstance(data, JsonText):
        return data
    try:
        return orjson.dumps(data, default=_default, option=_ORJSON_OPTS).decode("utf-8")
    except orjson.JSONEncodeError:  # the stdlib takes it, or raises _default's TypeError itself
        return json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":"))


def insert_ignore(conn: Connection, table: Table, index: Sequence[str] | None = None) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index)
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=index)
    raise ConfigError(f"the store does not support {name!r}; use SQLite or PostgreSQL")


def bulk_insert_ignore(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert many rows, skipping conflicts on ``conflict``; returns the ``returning`` columns of
    the rows actually inserted.

    On PostgreSQL the whole batch is one parameter, a JSON array of the row dicts, expanded by
    ``json_to_recordset`` into one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: one statement
    and one round trip, no temp table, and the rows are encoded by orjson (measured 8 us per
    inbox row against 12 us through COPY into a temp table, and half the client CPU).
    """
    if not rows:
        return []
    if conn.dialect.name != "postgresql" or len(rows) < 16:
        stmt = insert_ignore(conn, table, conflict)
        if returning:
            return [tuple(r) for r in conn.execute(stmt.returning(*(table.c[c] for c in returning)), list(rows))]
        conn.execute(stmt, list(rows))
        return []
    cols = list(rows[0])
    json_cols = [c for c in cols if _is_json(table.c[c].type)]
    if json_cols:  # JSON values travel as text inside the array and are cast back
        encoded = []
        for row in rows:
            row = dict(row)
            for c in json_cols:
                if row[c] is not None:
                    row[c] = dumps(row[c])
            encoded.append(row)
        rows = encoded
    decl = ", ".join(f'"{c}" {"text" if c in json_cols else _sql_type(conn, table, c)}' for c in cols)
    select_list = ", ".join(f'CAST("{c}" AS {_sql_type(conn, table, c)})' if c in json_cols else f'"{c}"' for c in cols)
    collist = ", ".join(f'"{c}"' for c in cols)
    ret = f" RETURNING {', '.join(returning)}" if returning else ""
    stmt = text(
        f"INSERT INTO {table.name} ({collist}) SELECT {select_list} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS x({decl}) "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING{ret}"
    )
    res = conn.execute(stmt, {"rows": dumps(list(rows))})
    return [tuple(r) for r in res] if returning else []


def copy_new_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]] | Sequence[tuple[Any, ...]],
    conflict: Sequence[str],
    returning: Sequence[str] = (),
    *,
    columns: Sequence[str] | None = None,
) -> list[tuple[Any, ...]]:
    """:func:`bulk_insert_ignore` for rows that are new as a rule (fresh uuid4s, keys just looked
    up, or dedup keys that repeat only on retries): on PostgreSQL they go straight into ``table``
    with ``COPY``, the cheapest write PostgreSQL has, inside a savepoint. Should one exist after
    all, the copy is rolled back to the savepoint and the rows go through
    :func:`bulk_insert_ignore`, which skips the existing ones. Returns the ``returning`` columns of
    the rows inserted, as :func:`bulk_insert_ignore` does.

    ``columns``: the rows are tuples in this column order (no dict per row on the hot path)."""
    if not rows:
        return []
    if columns is not None:
        tuples = typing.cast(Sequence[tuple[Any, ...]], rows)
        dict_rows: Sequence[dict[str, Any]] | None = None
        cols = list(columns)
    else:
        dict_rows = typing.cast(Sequence[dict[str, Any]], rows)
        cols = list(dict_rows[0])

    def as_dicts() -> Sequence[dict[str, Any]]:
        return dict_rows if dict_rows is not None else [dict(zip(cols, t, strict=True)) for t in tuples]

    if conn.dialect.name != "postgresql" or len(rows) < 16:
        return bulk_insert_ignore(conn, table, as_dicts(), conflict, returning)
    if dict_rows is not None:
        pick = operator.itemgetter(*cols)  # in C; a single column gives a scalar
        tuples = [pick(row) for row in dict_rows] if len(cols) > 1 else [(pick(row),) for row in dict_rows]
    from psycopg.errors import UniqueViolation  # the PostgreSQL path only: SQLite never loads psycopg

    json_idx = [i for i, c in enumerate(cols) if _is_json(table.c[c].type)]
    collist = ", ".join(f'"{c}"' for c in cols)
    try:
        with conn.begin_nested():
            raw = conn.connection.driver_connection
            assert raw is not None  # a live connection inside the caller's transaction
            with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({collist}) FROM STDIN") as copy:
                write = copy.write_row
                if json_idx:
                    for t in tuples:
                        row = list(t)
                        for i in json_idx:
                            if row[i] is not None:
                                row[i] = dumps(row[i])  # JsonText passes through as it is
                        write(row)
                else:
                    for t in tuples:
                        write(t)
    except (IntegrityError, UniqueViolation):  # the raw driver's error, as COPY runs on the raw cursor
        return bulk_insert_ignore(conn, table, as_dicts(), conflict, returning)
    if not returning:
        return []
    pick_ret = operator.itemgetter(*(cols.index(c) for c in returning))
    if len(returning) == 1:
        return [(pick_ret(t),) for t in tuples]
    return [pick_ret(t) for t in tuples]


def copy_deferred(
    conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]], columns: Sequence[str]
) -> DeferredCopy:
    """``COPY`` ``rows`` into ``table`` on PostgreSQL without waiting for the answer (see
    :func:`hub.store.pgcopy.copy_deferred`; psycopg loads only when a PostgreSQL store copies)."""
    from hub.store import pgcopy

    return pgcopy.copy_deferred(conn, table, rows, columns)


def _is_json(type_: Any) -> bool:
    return isinstance(type_, JSON) or "JSON" in repr(type_)


def _sql_type(conn: Connection, table: Table, column: str) -> str:
    key = (table.name, column)
    found = _SQL_TYPES.get(key)
    if found is None:
        found = _SQL_TYPES[key] = table.c[column].type.compile(dialect=conn.dialect)
    return found


_SQL_TYPES: dict[tuple[str, str], str] = {}


def upsert(conn: Connection, table: Table, index: Sequence[str], values: dict[str, Any]) -> None:
    """Insert ``values`` or update the row with the same ``index`` columns."""
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = mod.insert(table).values(**values)
    update = {k: getattr(stmt.excluded, k) for k in values if k not in index}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(index), set_=update))


class Store:
    """Owns the engine. ``begin()`` is one transaction; ``migrate()`` brings the schema up to date."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 5, clock: Clock = utcnow):
        self.url = url
        self.clock = clock
        self._sqlite_lock = threading.RLock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_locks_guard = threading.Lock()
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": dumps,
            "future": True,
        }
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
            # TCP keepalives from this end: a connection to a server that vanished (host lost,
            # network cut) fails within seconds instead of hanging for the kernel's two hours, so
            # a leader or a lock holder cut off from the store learns it has lost its lock
            kwargs["connect_args"] = {
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 4,
            }
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except Exception as exc:  # bad URL, missing driver
            raise ConfigError(f"cannot use store URL: {exc}", key="store.url") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # SQLite: Python's sqlite3 opens transactions lazily; make BEGIN explicit (IMMEDIATE) so
            # that concurrent writers in this process queue on the lock rather than fail.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        elif self.engine.dialect.name != "postgresql":
            raise ConfigError(
                f"the store supports SQLite and PostgreSQL, not {self.engine.dialect.name}", key="store.url"
            )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on error."""
        with self.engine.begin() as conn:
            yield conn

    def connect(self) -> Connection:
        return self.engine.connect()

    def migrate(self, *, timeout: float = 600.0, waiting: Callable[[str], None] | None = None) -> None:
        """Upgrade the schema to every head: the core's and each installed feature's branch.

        Any number of processes may call this at the same moment: the upgrade runs under the
        process-wide lock :data:`hub.store.locks.MIGRATE_LOCK` (a PostgreSQL advisory lock; on
        SQLite an ``flock`` on ``<database>.cxhub-migrate.lock``). The others wait for it (up to
        ``timeout`` seconds, then :class:`~hub.store.locks.LockTimeout`; ``waiting(holder)`` is
        called once when they start waiting), find the schema current and return.

        When the store is already at those heads (the common case for a CLI command), Alembic is
        not even imported: the heads are read off the revision files and compared with
        ``alembic_version``. Anything unexpected falls through to Alembic."""
        if self.schema_is_current():
            return
        from hub.store import locks

        try:
            with locks.held(self, locks.MIGRATE_LOCK, timeout=timeout, waiting=waiting):
                if self.schema_is_current():  # another process migrated while this one waited
                    return
                from alembic import command

                cfg = alembic_config()
                cfg.attributes["engine"] = self.engine
                command.upgrade(cfg, "heads")
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the store: {exc.orig}", key="store.url") from None

    def wait_until_current(
        self,
        timeout: float,
        *,
        poll: float = 1.0,
        sleep: Callable[[float], None] | None = None,
        waiting: Callable[[str], None] | None = None,
    ) -> None:
        """Wait (up to ``timeout`` seconds) until another process (``cxhub migrate``) has brought
        the schema up to date; never migrates. A :class:`ConfigError` saying what is missing after
        that. ``waiting(status)`` is called once when the schema is not current at first."""
        import time

        pause = sleep or time.sleep
        deadline = time.monotonic() + timeout
        told = False
        while not self.schema_is_current():
            status = self.schema_status()
            if not told and waiting is not None:
                waiting(status)
            told = True
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"the store's schema is not current after waiting {timeout:g}s ({status}); "
                    "run `cxhub migrate`, or start without --no-migrate",
                    key="store.url",
                )
            pause(poll)

    def schema_heads(self) -> frozenset[str]:
        """The head revisions every migration folder adds up to (what a current store holds)."""
        folders = tuple(migration_folders())
        heads = _heads(folders)
        if heads:
            return heads
        from alembic.script import ScriptDirectory

        return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())

    def stored_revisions(self) -> frozenset[str] | None:
        """The revisions in ``alembic_version``; None when the table does not exist yet. Raises
        ``OperationalError`` when the store cannot be reached."""
        with self.engine.connect() as conn:
            try:
                return frozenset(r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version")))
            except OperationalError:
                if self.is_sqlite:  # "no such table" (a SQLite that cannot be opened fails at connect)
                    return None
                raise
            except Exception:  # PostgreSQL: UndefinedTable arrives as ProgrammingError
                return None

    def schema_status(self) -> str:
        """``current``, or what is wrong: ``unreachable: ...``, ``empty``, ``behind: missing ...``."""
        try:
            stored = self.stored_revisions()
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}"
        if stored is None:
            return "empty (no migrations applied)"
        heads = self.schema_heads()
        if stored == heads:
            return "current"
        missing, unknown = sorted(heads - stored), sorted(stored - heads)
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"at {', '.join(unknown)}")
        return "behind: " + "; ".join(parts)

    def schema_is_current(self) -> bool:
        """Whether ``alembic_version`` holds exactly the heads of every migration folder."""
        heads = self.schema_heads()
        try:
            with self.engine.connect() as conn:
                stored = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
        except Exception:  # no table yet, or a store that cannot be reached: Alembic says which
            return False
        return stored == heads

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ shared key-value store

    def get(self, key: str) -> tuple[str, datetime | None] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.kv.c.value, schema.kv.c.expires_at).where(schema.kv.c.key == key)).first()
        if row is None or (row.expires_at is not None and row.expires_at <= self.clock()):
            return None
        return row.value, row.expires_at

    def put(self, key: str, value: str, expires_at: datetime | None = None) -> None:
        with self.begin() as conn:
            upsert(conn, schema.kv, ["key"], {"key": key, "value": value, "expires_at": expires_at})

    def delete(self, key: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(schema.kv).where(schema.kv.c.key == key))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A lock held by one process at a time: a PostgreSQL advisory lock; in SQLite, a process lock.

        Threads of this process queue on an in-process lock per key first, so that at most one pooled
        connection per key waits on the database (many waiting threads would exhaust the pool)."""
        if self.is_sqlite:
            with self._sqlite_lock:
                yield
            return
        with self._key_locks_guard:
            local = self._key_locks.setdefault(key, threading.Lock())
        with local:
            yield from self._advisory(key)

    def _advisory(self, key: str) -> Iterator[None]:
        lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})
                conn.commit()

    def try_lock(self, conn: Connection, key: str) -> bool:
        """Try a session-level advisory lock on ``conn`` (leader election); SQLite: always True."""
        if self.is_sqlite:
            return True
        lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id}).scalar())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # let SQLAlchemy's "begin" listener issue BEGIN itself
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
