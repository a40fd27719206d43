"""The ``sql`` pull source: build the incremental query, stream rows (psycopg named cursor on
PostgreSQL, SQLAlchemy elsewhere), attach children, make batches with their cursor."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import chain, islice
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError

from connectors.sql.options import ChildQuery, SqlOptions, subquery
from connectors.sql.rows import Rows, _dicts_of, _fold_children, _group_fold, _pg_convert, _plain_rows
from connectors.sql.values import _before, _initial_value, _shift_iso_text, decode_cursor, encode_cursor
from hub.errors import ConfigError, PermanentError, RetriableError
from hub.sdk.collector import gc_paused
from hub.sdk.columns import ColumnBatch
from hub.sdk.connector import Batch, PullSource, RawRecord, Rejected, utcnow

_ROW_VALUE_DIALECTS = {"postgresql", "mysql", "mariadb", "sqlite"}
_IN_CHUNK = 1000
# server gone / lost / can't connect / too many connections / shutdown / lock wait / deadlock
_MYSQL_TRANSIENT = {
    1040,
    1053,
    1205,
    1213,
    2002,
    2003,
    2006,
    2013,
    2055,
}  # keys per IN (...) list: far below every driver's parameter limit


class SqlSource(PullSource):
    """Any SQLAlchemy database (PostgreSQL, MariaDB/MySQL via PyMySQL, SQLite; SQL Server / Oracle with
    their driver installed): a table or a SELECT read on a strict-greater cursor, streamed from a
    server-side cursor in batches, with header/lines nesting."""

    overlap_commits = True  # reads never wait long: the sync overlaps them with the last commit
    #: the hub may ingest this source's batches as columns (``read_arrow``; ``columnar: false`` opts out)
    columnar = True
    kind = "sql"
    title = "SQL database table or query (incremental cursor, header/lines, streaming)"
    Options = SqlOptions
    options: SqlOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._engine: Engine | None = None

    # ------------------------------------------------------------ connection

    @property
    def safe_url(self) -> str:
        """The URL without its password (for messages)."""
        try:
            return make_url(self.options.url.get_secret_value()).render_as_string(hide_password=True)
        except ArgumentError:
            return "<unparseable URL>"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            url = self.options.url.get_secret_value()
            for plain, driver in (("postgresql://", "postgresql+psycopg://"), ("mysql://", "mysql+pymysql://")):
                if url.startswith(plain):
                    url = driver + url[len(plain) :]
            kwargs: dict[str, Any] = {"future": True}
            if self.options.connect_args:
                kwargs["connect_args"] = dict(self.options.connect_args)
            if not url.startswith("sqlite"):
                kwargs.update(pool_pre_ping=True, pool_size=2, max_overflow=2)
            try:
                self._engine = create_engine(url, **kwargs)
            except (ArgumentError, NoSuchModuleError, ImportError) as exc:
                raise ConfigError(
                    f"source {self.name!r}: cannot use database URL {self.safe_url}: {exc}", key="options.url"
                ) from None
        return self._engine

    @property
    def _psycopg(self) -> bool:
        """PostgreSQL through psycopg 3: rows are fetched with psycopg directly (not via SQLAlchemy)."""
        dialect = self.engine.dialect
        return dialect.name == "postgresql" and dialect.driver == "psycopg"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _connect(self) -> Connection:
        conn = self.engine.connect()
        for stmt in self.options.init_sql:
            conn.exec_driver_sql(stmt)
        return conn

    def _error(self, exc: Exception, what: str) -> Exception:
        """Classify a database error: connection problems retry, bad SQL / permissions do not."""
        orig = getattr(exc, "orig", None) or exc
        detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if self._transient(exc):
            return RetriableError(f"{what} on {self.safe_url} failed: {detail}", target=self.name)
        if isinstance(exc, SQLAlchemyError | OSError):
            return PermanentError(f"{what} on {self.safe_url} failed: {detail}", target=self.name)
        return exc

    def _transient(self, exc: Exception) -> bool:
        """A lost / refused connection, a deadlock or a lock timeout: worth another try."""
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        if not isinstance(exc, OperationalError):
            return False
        orig = exc.orig
        dialect = self.engine.dialect.name
        if dialect == "sqlite":  # sqlite3 reports bad SQL as OperationalError too
            return any(w in str(orig).lower() for w in ("locked", "busy", "unable to open"))
        if dialect in ("mysql", "mariadb"):  # PyMySQL: unknown column is an OperationalError as well
            code = orig.args[0] if orig is not None and orig.args else None
            return code in _MYSQL_TRANSIENT
        return True  # psycopg and most drivers: OperationalError is connection-level

    # ------------------------------------------------------------ SQL text

    def _q(self, name: str) -> str:
        prep = self.engine.dialect.identifier_preparer
        return ".".join(prep.quote(part) for part in name.split("."))

    def _base_sql(self) -> str:
        if self.options.query is not None:
            return subquery(self.options.query)
        assert self.options.table is not None
        return f"SELECT * FROM {self._q(self.options.table)}"

    def _style(self) -> str:
        style = self.options.cursor_style
        if style == "auto":
            return "row" if self.engine.dialect.name in _ROW_VALUE_DIALECTS else "expanded"
        return style

    def _bind(self, value: Any) -> Any:
        # SQLite has no datetime type: SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" text, and the
        # comparison is textual, so a datetime cursor must be bound in exactly that format
        if self.engine.dialect.name == "sqlite" and isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        if self.engine.dialect.name == "sqlite" and isinstance(value, date):
            return value.isoformat()
        return value

    def _condition(self, alias: str, n: int) -> str:
        cols = [f"{alias}.{self._q(c)}" for c in self.options.cursor]
        params = [f":c{i}" for i in range(n)]
        if len(cols) == 1:
            return f"{cols[0]} > {params[0]}"
        if self._style() == "row":
            return f"({', '.join(cols)}) > ({', '.join(params)})"
        # a > :c0 OR (a = :c0 AND b > :c1) OR (a = :c0 AND b = :c1 AND c > :c2) ...
        ors = []
        for i in range(len(cols)):
            eqs = [f"{cols[j]} = {params[j]}" for j in range(i)]
            ors.append("(" + " AND ".join([*eqs, f"{cols[i]} > {params[i]}"]) + ")")
        return "(" + " OR ".join(ors) + ")"

    def build_select(self, cursor: Sequence[Any] | None) -> tuple[str, dict[str, Any]]:
        """The SQL text and parameters of one pass after ``cursor`` (None: from the start)."""
        alias = "cxhub_src"
        sql = f"SELECT * FROM ({self._base_sql()}\n) {alias}"
        params: dict[str, Any] = {}
        # a row whose cursor is NULL is never read, on the first pass too: read once, its NULL
        # would become the committed cursor, which no row compares greater than (the source
        # would stop reading for good)
        conds = [f"{alias}.{self._q(c)} IS NOT NULL" for c in self.options.cursor]
        if cursor is not None:
            conds.insert(0, self._condition(alias, len(cursor)))
            params = {f"c{i}": self._bind(v) for i, v in enumerate(cursor)}
        sql += " WHERE " + " AND ".join(conds)
        order = [f"{alias}.{self._q(c)}" for c in self.options.cursor]
        if self.options.group_by:
            order += [f"{alias}.{self._q(c)}" for c in self.options.line_columns[:1]]
        return sql + " ORDER BY " + ", ".join(order), params

    def _child_sql(self, child: ChildQuery, *, any_array: bool = False) -> str:
        """The child query for one batch's keys: ``IN :keys`` (an expanding list), or with
        ``any_array`` (PostgreSQL) ``= ANY(:keys)``, all the keys as one array parameter."""
        alias = "cxhub_child"
        order = [f"{alias}.{self._q(child.key)}"] + [f"{alias}.{self._q(c)}" for c in child.order_by]
        cond = "= ANY(:keys)" if any_array else "IN :keys"
        return (
            f"SELECT * FROM ({subquery(child.query)}\n) {alias} "
            f"WHERE {alias}.{self._q(child.key)} {cond} ORDER BY {', '.join(order)}"
        )

    # ------------------------------------------------------------ state

    def start_cursor(self, state: dict[str, Any] | None, *, full: bool) -> list[Any] | None:
        """The cursor to read after: the committed one minus ``lookback``, or ``initial``."""
        if full or not state or state.get("cursor") is None:
            return [_initial_value(v) for v in self.options.initial] if self.options.initial else None
        cursor = decode_cursor(state["cursor"])
        if self.options.lookback and cursor:
            first = cursor[0]
            if isinstance(first, datetime | date):
                cursor[0] = first - timedelta(seconds=self.options.lookback)
            elif isinstance(first, str):  # SQLite keeps datetimes as ISO text
                cursor[0] = _shift_iso_text(first, self.options.lookback)
            elif isinstance(first, Decimal):  # numeric cursors (epoch seconds): the same units
                cursor[0] = first - Decimal(str(self.options.lookback))
            elif isinstance(first, int | float) and not isinstance(first, bool):
                cursor[0] = type(first)(first - self.options.lookback)
        return cursor

    def estimate(self, state: dict[str, Any] | None) -> int | None:
        if not self.options.count:
            return None
        sql, params = self.build_select(self.start_cursor(state, full=False))
        sql = sql.rsplit(" ORDER BY ", 1)[0]
        if self.options.group_by:
            keys = ", ".join(f"cxhub_cnt.{self._q(c)}" for c in self.options.group_by)
            count_sql = f"SELECT COUNT(*) FROM (SELECT DISTINCT {keys} FROM ({sql}) cxhub_cnt) cxhub_d"
        else:
            count_sql = f"SELECT COUNT(*) FROM ({sql}) cxhub_cnt"
        try:
            with self._connect() as conn:
                return int(conn.execute(text(count_sql), params).scalar_one())
        except SQLAlchemyError as exc:
            raise self._error(exc, "counting rows") from None

    # ------------------------------------------------------------ reading

    def read_arrow(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[ColumnBatch | Batch]:
        """The batches as Arrow columns (PostgreSQL, through ADBC's binary COPY), or as row batches
        where ADBC does not fit (``connectors.sql.arrow.adbc_reason``)."""
        from connectors.sql.arrow import read_arrow

        return read_arrow(self, state, full=full)

    def read(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[Batch]:
        """Stream rows after the committed cursor; one batch per ``batch_size`` records."""
        start = self.start_cursor(state, full=full)
        committed = None if full or not state or state.get("cursor") is None else decode_cursor(state["cursor"])
        sql, params = self.build_select(start)
        try:
            with self._connect() as conn:
                if self._psycopg:
                    columns, parts = self._pg_stream(conn, sql, params)
                else:
                    columns, parts = self._sa_stream(conn, sql, params)
                if self.options.group_by:
                    records = self._group(columns, parts)
                else:
                    as_dicts = _dicts_of(len(columns), [(c, i) for i, c in enumerate(columns)])
                    records = chain.from_iterable(map(as_dicts, parts))
                size = self.options.batch_size
                while True:
                    # a batch's thousands of new dicts would set the cyclic GC off again and again:
                    # paused while it is built (as ingest does), the collector runs between batches
                    with gc_paused():
                        chunk = list(islice(records, size))
                        if not chunk:
                            return
                        batch, committed = self._make_batch(conn, chunk, committed)
                    yield batch
        except SQLAlchemyError as exc:
            raise self._error(exc, "reading") from None

    def _sa_stream(self, conn: Connection, sql: str, params: dict[str, Any]) -> tuple[list[str], Iterator[Rows]]:
        """Rows through SQLAlchemy (MariaDB / MySQL's unbuffered cursor, SQLite, other drivers)."""
        size = self.options.batch_size
        stream = conn.execution_options(stream_results=True, yield_per=size)
        result = stream.execute(text(sql), params)
        # Result.yield_per explicitly: the execution option alone still buffered the whole
        # result in the first partition (SQLAlchemy 2.1 + psycopg 3, measured: 355 MB at 200k rows)
        return list(result.keys()), (_plain_rows(part) for part in result.yield_per(size).partitions(size))

    def _pg_stream(self, conn: Connection, sql: str, params: dict[str, Any]) -> tuple[list[str], Iterator[Rows]]:
        """Rows of a psycopg named (server-side) cursor, ``batch_size`` per ``FETCH``, as tuples:
        no SQLAlchemy ``Row`` per row, and no per-value type check when every column's type loads
        as a plain value (text, numbers, timestamps...)."""
        compiled = text(sql).compile(dialect=self.engine.dialect)  # :c0 -> %(c0)s, % -> %%
        statement, args = compiled.string, compiled.construct_params(params)
        cur = conn.connection.driver_connection.cursor(name="cxhub_sql_read")  # type: ignore[union-attr]
        with _pg_errors(conn, statement, args):
            cur.execute(statement, args)
        columns = [d.name for d in cur.description or ()]
        convert = _pg_convert(cur.description or ())

        def parts() -> Iterator[Rows]:
            size = self.options.batch_size
            try:
                while True:
                    with _pg_errors(conn, statement, args):
                        part = cur.fetchmany(size)
                    if not part:
                        return
                    yield part if convert is None else convert(part)
            finally:
                with contextlib.suppress(Exception):  # a dead connection closed it already
                    cur.close()

        return columns, parts()

    def _group(self, columns: list[str], parts: Iterator[Rows]) -> Iterator[dict[str, Any]]:
        """Fold consecutive rows with the same ``group_by`` key into one record with a list of lines."""
        line_set = set(self.options.line_columns)
        missing = [c for c in (*self.options.group_by, *self.options.line_columns) if c not in columns]
        if missing:
            raise PermanentError(
                f"group_by / line_columns {missing} are not columns of the query (columns: {columns})",
                target=self.name,
            )
        header = [(c, i) for i, c in enumerate(columns) if c not in line_set]
        lines = [(c, columns.index(c)) for c in self.options.line_columns]
        keys = [columns.index(c) for c in self.options.group_by]
        fold = _group_fold(len(columns), header, lines, keys, self.options.lines_field)
        return fold(chain.from_iterable(parts))

    def _make_batch(
        self, conn: Connection, chunk: list[dict[str, Any]], best: list[Any] | None
    ) -> tuple[Batch, list[Any] | None]:
        if self.options.children:
            self._attach_children(conn, chunk)
        records: list[RawRecord] = []
        rejected: list[Rejected] = []
        id_cols = self.options.id
        now = utcnow()
        name = self.name
        if len(id_cols) == 1:  # the common case: one id column, usually text or an integer
            col = id_cols[0]
            for rec in chunk:
                v = rec.get(col)
                if type(v) is str and v:
                    records.append(RawRecord(name, v, rec, now))
                elif v is None or v == "":
                    rejected.append(Rejected(None, rec, f"id column(s) {[col]} empty: the row has no usable id"))
                else:
                    records.append(RawRecord(name, format(v, "f") if isinstance(v, Decimal) else str(v), rec, now))
        else:
            for rec in chunk:
                ids = [rec.get(c) for c in id_cols]
                if any(v is None or v == "" for v in ids):
                    missing = [c for c, v in zip(id_cols, ids, strict=True) if v is None or v == ""]
                    rejected.append(Rejected(None, rec, f"id column(s) {missing} empty: the row has no usable id"))
                    continue
                ext = ":".join(format(v, "f") if isinstance(v, Decimal) else str(v) for v in ids)
                records.append(RawRecord(name, ext, rec, now))
        last = [chunk[-1].get(c) for c in self.options.cursor]
        # the cursor never moves back (lookback re-reads rows below the committed cursor)
        if best is None or _before(best, last):
            best = last
        return Batch(records, {"cursor": encode_cursor(best)}, rejected), best

    def _attach_children(self, conn: Connection, chunk: list[dict[str, Any]]) -> None:
        for field_name, child in self.options.children.items():
            parent_key = child.parent_key or child.key
            parents = [r.get(parent_key) for r in chunk]
            keys = list(dict.fromkeys(parents))
            if None in keys:
                keys.remove(None)
            try:
                by_key = self._pg_children(conn, child, keys) if self._psycopg else self._sa_children(child, keys)
            except SQLAlchemyError as exc:
                raise self._error(exc, f"reading children {field_name!r}") from None
            for rec, key in zip(chunk, parents, strict=True):
                found = by_key.get(key)
                rec[field_name] = [] if found is None else found

    def _sa_children(self, child: ChildQuery, keys: list[Any]) -> dict[Any, list[dict[str, Any]]]:
        by_key: dict[Any, list[dict[str, Any]]] = {}
        sql = text(self._child_sql(child)).bindparams(_expanding("keys"))
        # a second connection: MySQL's unbuffered cursor owns the first until it is drained
        with self._connect() as conn:
            for i in range(0, len(keys), _IN_CHUNK):
                result = conn.execute(sql, {"keys": keys[i : i + _IN_CHUNK]})
                _fold_children(child.key, list(result.keys()), _plain_rows(result.all()), by_key)
        return by_key

    def _pg_children(self, conn: Connection, child: ChildQuery, keys: list[Any]) -> dict[Any, list[dict[str, Any]]]:
        """All the batch's children in one statement, ``key = ANY(%(keys)s)`` with the keys as one
        array, on the reading connection (beside its open named cursor, in the same transaction)."""
        by_key: dict[Any, list[dict[str, Any]]] = {}
        if not keys:
            return by_key
        compiled = text(self._child_sql(child, any_array=True)).compile(dialect=self.engine.dialect)
        statement, args = compiled.string, compiled.construct_params({"keys": keys})
        if all(type(k) is int for k in keys):
            # integers as a binary array: half the client CPU of the text form. Other keys keep the
            # text form, whose array type the server infers from the column (char(n) keys...)
            statement = statement.replace("ANY(%(keys)s)", "ANY(%(keys)b)", 1)
        with _pg_errors(conn, statement, args):
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute(statement, args)
            rows = cur.fetchall()
        description = cur.description or ()
        convert = _pg_convert(description)
        _fold_children(child.key, [d.name for d in description], rows if convert is None else convert(rows), by_key)
        return by_key


@contextlib.contextmanager
def _pg_errors(conn: Connection, statement: str, params: Any) -> Iterator[None]:
    """psycopg errors of the direct read path as SQLAlchemy's ``DBAPIError`` (what ``_error`` and
    ``run_sync`` classify), the pooled connection invalidated when the server is gone."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        try:
            gone = conn.dialect.is_disconnect(exc, conn.connection.driver_connection, None)  # type: ignore[arg-type]
        except Exception:  # the connection is unusable already
            gone = True
        if gone:
            with contextlib.suppress(Exception):
                conn.invalidate()
        raise DBAPIError.instance(
            statement, params, exc, psycopg.Error, connection_invalidated=gone, dialect=conn.dialect
        ) from exc


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)
