"""The ``sql`` source's columnar read: PostgreSQL rows straight into Arrow with ADBC (binary COPY),
in batches of whole records with their children, for the hub's columnar ingest.

One ADBC connection streams the header query (the same SQL, cursor and order as the row read);
a second one reads each batch's children (``key = ANY(...)``, all the batch's keys as one array).
Batches hold ``batch_size`` records; the cursor state is that of the batch's last record, never
moving back, as the row read's.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connectors.sql.options import subquery
from connectors.sql.values import _before, encode_cursor
from hub.errors import PermanentError, RetriableError
from hub.sdk.columns import ColumnBatch, bytes_value
from hub.sdk.connector import Batch, Rejected, utcnow

if TYPE_CHECKING:
    import pyarrow as pa

    from connectors.sql.source import SqlSource


log = logging.getLogger("cxhub.sql")
_PARAM = re.compile(r":c(\d+)\b")
#: the size of the Arrow batches the driver decodes the header stream into. Its default (16 MB,
#: ~100,000 POS order headers) held that many rows in memory beside the batch being ingested: with
#: 1 MB the peak RSS of a 1M-line sync is ~30 MB lower, at the same speed
READ_HINT_BYTES = 1 << 20


def adbc_reason(source: SqlSource) -> str | None:
    """Why this source cannot read with ADBC (then its rows become Arrow columns in the hub), or None."""
    if source.engine.dialect.name != "postgresql":
        return f"{source.engine.dialect.name} is read through SQLAlchemy rows"
    if source.options.group_by:
        return "group_by folds rows in Python"
    if source.options.init_sql or source.options.connect_args:
        return "init_sql / connect_args apply to the SQLAlchemy connection"
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        return "adbc-driver-postgresql is not installed"
    return None


def _libpq_url(url: str) -> str:
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


#: PostgreSQL's built-in range and multirange types (psycopg reads them as ``Range`` objects, whose
#: text is not PostgreSQL's): a source with one is read through rows
_RANGE_OIDS = frozenset({3904, 3906, 3908, 3910, 3912, 3926, 4451, 4532, 4533, 4534, 4535, 4536})
_RANGE_NAMES = frozenset(
    {"int4range", "numrange", "tsrange", "tstzrange", "daterange", "int8range"}
    | {"int4multirange", "nummultirange", "tsmultirange", "tstzmultirange", "datemultirange", "int8multirange"}
)


def _pg_type(f: pa.Field) -> str:
    meta = f.metadata or {}
    return (meta.get(b"POSTGRESQL:type") or meta.get(b"ADBC:postgresql:typname") or b"").decode("utf-8", "replace")


@dataclass(frozen=True)
class ColumnPlan:
    """How the columnar read takes a query's columns so that each value is the row read's.

    ``text``: columns the driver hands over in PostgreSQL's binary format (tsvector, inet, point,
    bit, xml, money, composite types... as opaque bytes): read as PostgreSQL's text instead, which
    is what psycopg gives for them; ``timetz``: of those, the times with a zone (their text then as
    Python prints the time, as the row read does); ``json``: json / jsonb columns; ``rows``: why
    the source must be read through rows instead (arrays of other than text and numbers, ranges),
    or None."""

    names: tuple[str, ...] = ()
    text: frozenset[str] = frozenset()
    timetz: frozenset[str] = frozenset()
    rows: str | None = None
    #: json / jsonb columns: parsed per record, as psycopg parses them, and left out of the columns
    json: frozenset[str] = frozenset()


def plan_columns(schema: pa.Schema) -> ColumnPlan:
    """The :class:`ColumnPlan` of a query's Arrow schema (as ADBC's PostgreSQL driver gives it)."""
    import pyarrow as pa

    text: set[str] = set()
    timetz: set[str] = set()
    json: set[str] = set()
    rows: list[str] = []
    for f in schema:
        t, pg = f.type, _pg_type(f)
        oid = pg[len("unnamed<oid:") : -1] if pg.startswith("unnamed<oid:") else ""
        if pg in _RANGE_NAMES or (oid.isdigit() and int(oid) in _RANGE_OIDS):
            rows.append(f"{f.name} ({pg if not oid else 'a range'})")
        elif isinstance(t, pa.BaseExtensionType):
            name = t.extension_name
            if name == "arrow.json":
                json.add(f.name)
            elif name == "arrow.opaque" and pg != "numeric":
                text.add(f.name)
                if pg == "timetz":
                    timetz.add(f.name)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            v = t.value_type
            if not (
                pa.types.is_string(v) or pa.types.is_integer(v) or pa.types.is_floating(v) or pa.types.is_boolean(v)
            ) or pg in ("_numeric", "_json", "_jsonb"):
                rows.append(f"{f.name} ({pg or t})")
        elif pa.types.is_struct(t) or pg == "money" or (pa.types.is_binary(t) and pg not in ("bytea", "")):
            text.add(f.name)
    names = schema.names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # a record is a dict: the row read keeps the last column of a name
        rows.append(f"columns of the same name ({', '.join(twice)}): each record keeps the last")
    return ColumnPlan(tuple(names), frozenset(text), frozenset(timetz), ", ".join(rows) or None, frozenset(json))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def project(sql: str, alias: str, plan: ColumnPlan) -> str:
    """``sql`` (``SELECT * FROM (...) alias ...``) selecting the plan's columns, its ``text`` ones as text."""
    names, text = plan.names, plan.text
    if not text:
        return sql
    head = "SELECT * FROM ("
    assert sql.startswith(head), sql
    # format('%s') is the type's output function, the text psycopg reads (a cast to text may differ:
    # inet's adds the /32)
    cols = ", ".join(
        f"CASE WHEN {alias}.{_ident(n)} IS NULL THEN NULL ELSE format('%s', {alias}.{_ident(n)}) END AS {_ident(n)}"
        if n in text
        else f"{alias}.{_ident(n)}"
        for n in names
    )
    return f"SELECT {cols} FROM (" + sql[len(head) :]


def _normalise(table: pa.Table, timetz: frozenset[str] = frozenset()) -> tuple[pa.Table, frozenset[str]]:
    """Columns as the row read gives their values: extension columns (PostgreSQL numeric as opaque
    text) as their storage, uuids as text, intervals as Python prints the timedelta psycopg makes of
    them (a month is 30 days), times with a zone as Python prints them; which were numeric."""
    import uuid
    from datetime import time, timedelta

    import pyarrow as pa

    numeric = set()
    cols = []
    for f, col in zip(table.schema, table.columns, strict=True):
        pg = _pg_type(f)
        if pg == "numeric":
            numeric.add(f.name)
        if isinstance(f.type, pa.BaseExtensionType):
            if f.type.extension_name == "arrow.uuid":
                col = pa.chunked_array(
                    [
                        pa.array(
                            [None if b is None else str(uuid.UUID(bytes=b)) for b in c.storage.to_pylist()], pa.string()
                        )
                        for c in col.chunks
                    ],
                    type=pa.string(),
                )
            else:
                col = pa.chunked_array([c.storage for c in col.chunks], type=f.type.storage_type)
        elif pa.types.is_interval(f.type):
            col = pa.chunked_array(
                [
                    pa.array(
                        [
                            None
                            if v is None
                            else str(timedelta(days=v.months * 30 + v.days, microseconds=v.nanoseconds // 1000))
                            for v in c.to_pylist()
                        ],
                        pa.string(),
                    )
                    for c in col.chunks
                ],
                type=pa.string(),
            )
        elif f.name in timetz:

            def zoned(v: str | None) -> str | None:
                try:
                    return None if v is None else str(time.fromisoformat(v))
                except ValueError:
                    return v

            col = pa.chunked_array(
                [pa.array([zoned(v) for v in c.to_pylist()], pa.string()) for c in col.chunks], type=pa.string()
            )
        cols.append(col)
    names = table.column_names
    return pa.Table.from_arrays(cols, names=names), frozenset(numeric)


def read_arrow(source: SqlSource, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[ColumnBatch | Batch]:
    """The source's batches as Arrow (ADBC), or its row batches where ADBC does not fit."""
    if adbc_reason(source) is not None:
        yield from source.read(state, full=full)
        return
    import adbc_driver_postgresql.dbapi as adbc
    from adbc_driver_postgresql import StatementOptions

    from connectors.sql.values import decode_cursor

    opts = source.options
    start = source.start_cursor(state, full=full)
    best = None if full or not state or state.get("cursor") is None else decode_cursor(state["cursor"])
    sql, params = source.build_select(start)
    args: list[Any] = []

    def placeholder(m: re.Match[str]) -> str:
        value = params[f"c{m.group(1)}"]
        args.append(str(value) if isinstance(value, Decimal) else value)
        n = len(args)
        return f"CAST(${n} AS numeric)" if isinstance(value, Decimal) else f"${n}"

    sql = _PARAM.sub(placeholder, sql)
    url = _libpq_url(opts.url.get_secret_value())
    try:
        conn = adbc.connect(url)
    except Exception as exc:
        raise RetriableError(f"reading on {source.safe_url} failed: {_first_line(exc)}", target=source.name) from None
    child_conn = None
    rows_because: str | None = None
    try:
        # the columns' types first (no row is read): some are taken as text, some need the row read
        plan = plan_columns(_schema(source, conn, sql + " LIMIT 0", args, "reading"))
        child_plans = {
            name: plan_columns(
                _schema(
                    source,
                    conn,
                    f"SELECT * FROM ({subquery(child.query)}\n) cxhub_child LIMIT 0",
                    [],
                    f"reading children {name!r}",
                )
            )
            for name, child in opts.children.items()
        }
        keys = plan.json & {*opts.cursor, *opts.id, *(c.parent_key or c.key for c in opts.children.values())}
        keys |= {f"{n}.{c.key}" for n, c in opts.children.items() if c.key in child_plans[n].json}
        rows_because = (
            plan.rows
            or next((f"{n}: {cp.rows}" for n, cp in child_plans.items() if cp.rows), None)
            or (f"json keys {sorted(keys)}" if keys else None)
        )
        if rows_because is None:
            cur = conn.cursor()
            cur.adbc_statement.set_options(**{StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(READ_HINT_BYTES)})
            try:
                cur.execute(project(sql, "cxhub_src", plan), parameters=tuple(args) if args else None)
                reader = cur.fetch_record_batch()
            except Exception as exc:
                raise _error(source, exc, "reading") from None
            if opts.children:
                child_conn = adbc.connect(url)
            for table in _chunks(reader, opts.batch_size, source):
                table, numeric = _normalise(table, plan.timetz)
                batch = _make(source, table, numeric, child_conn, child_plans, plan.json)
                last = _last_cursor(table, numeric, opts.cursor)
                if best is None or _before(best, last):
                    best = last
                batch.state = {"cursor": encode_cursor(best)}
                yield batch
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        if child_conn is not None:
            with contextlib.suppress(Exception):
                child_conn.close()
    if rows_because is not None:
        log.info("source %s is read through rows, not columns: %s", source.name, rows_because)
        yield from source.read(state, full=full)


def _schema(source: SqlSource, conn: Any, sql: str, args: list[Any], what: str) -> pa.Schema:
    """The Arrow schema of ``sql`` (a query that returns no row)."""
    cur = conn.cursor()
    try:
        cur.execute(sql, parameters=tuple(args) if args else None)
        return cur.fetch_arrow_table().schema
    except Exception as exc:
        raise _error(source, exc, what) from None
    finally:
        with contextlib.suppress(Exception):
            cur.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _error(source: SqlSource, exc: BaseException, what: str) -> Exception:
    """Connection problems retry; bad SQL and permissions do not (as the row read classifies them)."""
    detail = _first_line(exc)
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate.startswith(("08", "57", "40", "53")) or "connection" in detail.lower():
        return RetriableError(f"{what} on {source.safe_url} failed: {detail}", target=source.name)
    return PermanentError(f"{what} on {source.safe_url} failed: {detail}", target=source.name)


def _chunks(reader: Any, size: int, source: SqlSource) -> Iterator[pa.Table]:
    """``size`` rows at a time from a record batch reader."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    count = 0
    while True:
        try:
            rb = reader.read_next_batch()
        except StopIteration:
            break
        except Exception as exc:
            raise _error(source, exc, "reading") from None
        pending.append(rb)
        count += rb.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size).combine_chunks()
            rest = table.slice(size)
            pending = rest.to_batches()
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks()


def _last_cursor(table: pa.Table, numeric: frozenset[str], cursor: list[str]) -> list[Any]:
    last = table.slice(table.num_rows - 1, 1).select(cursor).to_pylist()[0]
    return [Decimal(last[c]) if c in numeric and last[c] is not None else last[c] for c in cursor]


def _make(
    source: SqlSource,
    table: pa.Table,
    numeric: frozenset[str],
    child_conn: Any,
    plans: dict[str, ColumnPlan],
    json_cols: frozenset[str] = frozenset(),
) -> ColumnBatch:
    import pyarrow.compute as pc

    opts = source.options
    children: dict[str, pa.Table] = {}
    for name, child in opts.children.items():
        children[name], child_numeric = _children(source, child_conn, name, child, table, plans[name])
        numeric = numeric | {f"{name}.{c}" for c in child_numeric}
    # json values are held outside the columns ("opaque"): the records as the row read gives them
    # (parsed) are built when the mapping reads into them
    json_all = json_cols | {f"{n}.{c}" for n in children for c in plans[n].json}
    ids = _ids(table, numeric, opts.id)
    rejected: list[Rejected] = []
    if ids.null_count:  # rows without a usable id: quarantined with the row read's reason
        for i in pc.indices_nonzero(pc.is_null(ids)).to_pylist():
            rec = payload_of(table, children, numeric, i, json_all)
            missing = [c for c in opts.id if rec.get(c) is None or rec.get(c) == ""]
            rejected.append(Rejected(None, rec, f"id column(s) {missing} empty: the row has no usable id"))
    if not json_all:  # a SQL row is its columns: no key is held outside them
        return ColumnBatch(
            table=table,
            ids=ids,
            state={},
            received_at=utcnow(),
            children=children,
            numeric=numeric,
            rejected=rejected,
            opaque=frozenset(),
        )
    full, full_children = table, children
    return ColumnBatch(
        table=table.drop_columns(sorted(json_cols)),
        ids=ids,
        state={},
        received_at=utcnow(),
        children={n: t.drop_columns(sorted(plans[n].json)) for n, t in children.items()},
        numeric=numeric,
        rejected=rejected,
        opaque=json_all,
        load_payloads=lambda: payloads_of(full, full_children, numeric, json_all),
    )


def _plain_rows(
    rows: list[dict[str, Any]], prefix: str, numeric: frozenset[str], json_cols: frozenset[str]
) -> list[dict[str, Any]]:
    """Values of Arrow rows as the row read gives them: numeric as Decimal, bytea as text or
    base64, json parsed (with the standard library, as psycopg does)."""
    import json

    for row in rows:
        for k, v in row.items():
            if v is None:
                continue
            if prefix + k in numeric:
                row[k] = Decimal(v)
            elif prefix + k in json_cols:
                row[k] = json.loads(v)
            elif isinstance(v, bytes):
                row[k] = bytes_value(v)
    return rows


def payload_of(
    table: pa.Table,
    children: dict[str, pa.Table],
    numeric: frozenset[str],
    i: int,
    json_cols: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Record ``i`` as the row read gives it: a dict (numeric as Decimal), children as lists of dicts."""
    import pyarrow.compute as pc

    rec = _plain_rows(table.slice(i, 1).to_pylist(), "", numeric, json_cols)[0]
    for name, child in children.items():
        rows = child.filter(pc.equal(child["__row"], i)).drop_columns(["__row"])
        rec[name] = _plain_rows(rows.to_pylist(), f"{name}.", numeric, json_cols)
    return rec


def payloads_of(
    table: pa.Table, children: dict[str, pa.Table], numeric: frozenset[str], json_cols: frozenset[str]
) -> list[dict[str, Any]]:
    """Every record of the batch as the row read gives it (:func:`payload_of`, in one pass)."""
    recs = _plain_rows(table.to_pylist(), "", numeric, json_cols)
    for name, child in children.items():
        for rec in recs:
            rec[name] = []
        parents = child["__row"].to_pylist()
        rows = _plain_rows(child.drop_columns(["__row"]).to_pylist(), f"{name}.", numeric, json_cols)
        for parent, row in zip(parents, rows, strict=True):
            recs[parent][name].append(row)
    return recs


def _ids(table: pa.Table, numeric: frozenset[str], id_cols: list[str]) -> pa.Array:
    """Each record's external id (null: none), as the row read makes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for c in id_cols:
        col = table[c].combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            text = col
        elif pa.types.is_integer(col.type):
            text = pc.cast(col, pa.string())
        else:
            text = pa.array(
                [
                    None if v is None else (format(v, "f") if isinstance(v, Decimal) else str(v))
                    for v in col.to_pylist()
                ],
                pa.string(),
            )
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        parts.append(text)
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, ":", null_handling="emit_null")


def _children(
    source: SqlSource, conn: Any, name: str, child: Any, header: pa.Table, plan: ColumnPlan
) -> tuple[pa.Table, frozenset[str]]:
    """The batch's children of ``name``, with ``__row``: the index of their record in ``header``."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    parent_key = child.parent_key or child.key
    if parent_key not in header.column_names:  # as the row read: no key, no children
        return pa.table({"__row": pa.array([], pa.int32())}), frozenset()
    keys = pc.unique(header[parent_key].combine_chunks().drop_null())
    if len(keys) == 0:
        return pa.table({"__row": pa.array([], pa.int32())}), frozenset()
    sql = project(source._child_sql(child), "cxhub_child", plan)
    sql = sql.replace("IN :keys", "= ANY(CAST($1 AS {}[]))")
    if pa.types.is_integer(keys.type):
        literal = "{" + ",".join(str(k) for k in keys.to_pylist()) + "}"
        sql = sql.format("bigint")
    else:
        literal = (
            "{" + ",".join('"' + str(k).replace("\\", "\\\\").replace('"', '\\"') + '"' for k in keys.to_pylist()) + "}"
        )
        sql = sql.format("text")
    cur = conn.cursor()
    try:
        cur.execute(sql, parameters=(literal,))
        rows = cur.fetch_arrow_table()
    except Exception as exc:
        raise _error(source, exc, f"reading children {name!r}") from None
    finally:
        with contextlib.suppress(Exception):
            cur.close()
    rows, numeric = _normalise(rows, plan.timetz)
    if child.key not in rows.column_names:
        raise PermanentError(f"the child query has no column {child.key!r} (columns: {rows.column_names})")
    head = pl.DataFrame({"__key": pl.from_arrow(header[parent_key].combine_chunks())}).with_row_index("__row")
    body = pl.from_arrow(rows)
    assert isinstance(body, pl.DataFrame)
    body = body.with_row_index("__ord").with_columns(pl.col(child.key).alias("__key"))
    if body.schema["__key"] != head.schema["__key"]:
        body = body.with_columns(pl.col("__key").cast(pl.String))
        head = head.with_columns(pl.col("__key").cast(pl.String))
    joined = head.join(body, on="__key", how="inner").sort(["__row", "__ord"])
    out = joined.select(pl.col("__row").cast(pl.Int32), *rows.column_names).to_arrow()
    # Polars gives large strings; the mapping takes either
    return out, numeric
