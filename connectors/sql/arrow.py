"""The ``sql`` source's columnar read: PostgreSQL rows straight into Arrow with ADBC (binary COPY),
in batches of whole records with their children, for the hub's columnar ingest.

One ADBC connection streams the header query (the same SQL, cursor and order as the row read);
a second one reads each batch's children (``key = ANY(...)``, all the batch's keys as one array).
Batches hold ``batch_size`` records; the cursor state is that of the batch's last record, never
moving back, as the row read's.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connectors.sql.values import _before, encode_cursor
from hub.errors import PermanentError, RetriableError
from hub.sdk.columns import ColumnBatch
from hub.sdk.connector import Batch, Rejected, utcnow

if TYPE_CHECKING:
    import pyarrow as pa

    from connectors.sql.source import SqlSource


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


def _normalise(table: pa.Table) -> tuple[pa.Table, frozenset[str]]:
    """Extension columns (PostgreSQL numeric as opaque text) as their storage; which were numeric."""
    import pyarrow as pa

    numeric = set()
    cols = []
    for f, col in zip(table.schema, table.columns, strict=True):
        meta = f.metadata or {}
        if meta.get(b"ADBC:postgresql:typname") == b"numeric" or meta.get(b"POSTGRESQL:type") == b"numeric":
            numeric.add(f.name)
        if isinstance(f.type, pa.BaseExtensionType):
            col = pa.chunked_array([c.storage for c in col.chunks], type=f.type.storage_type)
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
    try:
        cur = conn.cursor()
        cur.adbc_statement.set_options(**{StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(READ_HINT_BYTES)})
        try:
            cur.execute(sql, parameters=tuple(args) if args else None)
            reader = cur.fetch_record_batch()
        except Exception as exc:
            raise _error(source, exc, "reading") from None
        if opts.children:
            child_conn = adbc.connect(url)
        for table in _chunks(reader, opts.batch_size, source):
            table, numeric = _normalise(table)
            batch = _make(source, table, numeric, child_conn)
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


def _make(source: SqlSource, table: pa.Table, numeric: frozenset[str], child_conn: Any) -> ColumnBatch:
    import pyarrow.compute as pc

    opts = source.options
    children: dict[str, pa.Table] = {}
    for name, child in opts.children.items():
        children[name], child_numeric = _children(source, child_conn, name, child, table)
        numeric = numeric | {f"{name}.{c}" for c in child_numeric}
    ids = _ids(table, numeric, opts.id)
    rejected: list[Rejected] = []
    if ids.null_count:  # rows without a usable id: quarantined with the row read's reason
        for i in pc.indices_nonzero(pc.is_null(ids)).to_pylist():
            rec = payload_of(table, children, numeric, i)
            missing = [c for c in opts.id if rec.get(c) is None or rec.get(c) == ""]
            rejected.append(Rejected(None, rec, f"id column(s) {missing} empty: the row has no usable id"))
    # a SQL row is its columns: no key is held outside them
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


def payload_of(table: pa.Table, children: dict[str, pa.Table], numeric: frozenset[str], i: int) -> dict[str, Any]:
    """Record ``i`` as the row read gives it: a dict (numeric as Decimal), children as lists of dicts."""
    import pyarrow.compute as pc

    def plain(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
        for row in rows:
            for k, v in row.items():
                if prefix + k in numeric and v is not None:
                    row[k] = Decimal(v)
        return rows

    rec = plain(table.slice(i, 1).to_pylist(), "")[0]
    for name, child in children.items():
        rows = child.filter(pc.equal(child["__row"], i)).drop_columns(["__row"])
        rec[name] = plain(rows.to_pylist(), f"{name}.")
    return rec


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


def _children(source: SqlSource, conn: Any, name: str, child: Any, header: pa.Table) -> tuple[pa.Table, frozenset[str]]:
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
    sql = source._child_sql(child).replace("IN :keys", "= ANY(CAST($1 AS {}[]))")
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
    rows, numeric = _normalise(rows)
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
