"""Row records as Arrow columns: a source that reads dicts (SQLite, MariaDB, JSON lines) still gets
the vectorised mapping and the columnar store writes.

Each top-level key becomes a column of the one Arrow type its values share; the mapping's nested
lists (``lines``) become child tables. The records themselves are kept: what the row path decides
(flagged records, quarantine payloads) reads exactly what the source read. A column whose values
do not share a type (a SQLite column holding text and numbers) leaves the batch to the row path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from hub.sdk.columns import ColumnBatch
from hub.sdk.connector import Batch

_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    date: pa.date32(),
}


class Mixed(Exception):
    """A column whose values do not share one Arrow type."""


def _column(values: list[Any]) -> tuple[pa.Array, bool] | None:
    """The Arrow array of ``values`` and whether it holds decimals as text; None: not scalar."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values), pa.string()), False
    if len(kinds) > 1:
        raise Mixed
    (kind,) = kinds
    if kind is Decimal:
        if not all(v.is_finite() for v in values if v is not None):
            raise Mixed
        return pa.array([None if v is None else str(v) for v in values], pa.string()), True
    if kind is datetime:
        zones = {v.utcoffset() is None for v in values if v is not None}
        if len(zones) > 1 or False in zones:
            raise Mixed  # aware times keep their offset in the payload: the row path
        return pa.array(values, pa.timestamp("us")), False
    if kind in (dict, list):
        return None
    arrow_type = _TYPES.get(kind)
    if arrow_type is None:
        raise Mixed
    try:
        return pa.array(values, arrow_type), False
    except (pa.ArrowInvalid, OverflowError):
        raise Mixed from None


def _flat(row: Mapping[str, Any], skip: Collection[str], prefix: str = "") -> dict[str, Any]:
    """``row`` with nested objects as dotted keys (``store.code``), the columns of nested paths."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if not prefix and k in skip:
            continue
        if isinstance(v, dict) and "." not in k:
            out[prefix + k] = v  # kept whole too: a path may name the object itself
            out.update(_flat(v, (), f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _table(rows: list[Mapping[str, Any]], skip: Collection[str]) -> tuple[pa.Table, set[str], set[str]]:
    """The columns of ``rows`` (but ``skip``), the numeric ones, and the keys left out (nested values)."""
    if any(isinstance(v, dict) for r in rows for v in r.values()):
        rows = [_flat(r, skip) for r in rows]
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            if k not in skip:
                names.setdefault(k, None)
    arrays = []
    kept = []
    numeric = set()
    opaque = set()
    for name in names:
        col = _column([r.get(name) for r in rows])
        if col is None:
            opaque.add(name)
            continue  # nested values: read by the row path when a mapping needs them
        arrays.append(col[0])
        kept.append(name)
        if col[1]:
            numeric.add(name)
    if not kept:
        return pa.table({"__empty": pa.nulls(len(rows))}), numeric, opaque
    return pa.Table.from_arrays(arrays, names=kept), numeric, opaque


def from_rows(batch: Batch, list_fields: Collection[str]) -> ColumnBatch | None:
    """``batch`` as columns, or None when the row path must take it (a column of mixed types, a
    nested list that is not a list of objects)."""
    payloads = [r.payload for r in batch.records]
    if not all(isinstance(p, dict) for p in payloads):
        return None
    try:
        table, numeric, opaque = _table(payloads, list_fields)
        children: dict[str, pa.Table] = {}
        present: dict[str, pa.Array] = {}
        for name in list_fields:
            flags = []
            rows: list[Mapping[str, Any]] = []
            parents: list[int] = []
            for i, p in enumerate(payloads):
                value = p.get(name)
                if value is None:
                    flags.append(False)
                    continue
                if not isinstance(value, list) or not all(isinstance(el, dict) for el in value):
                    return None
                flags.append(True)
                rows.extend(value)
                parents.extend([i] * len(value))
            child, child_numeric, child_opaque = _table(rows, ())
            children[name] = child.append_column("__row", pa.array(parents, pa.int32()))
            present[name] = pa.array(flags, pa.bool_())
            numeric |= {f"{name}.{c}" for c in child_numeric}
            opaque |= {f"{name}.{c}" for c in child_opaque}
    except Mixed:
        return None
    received = batch.records[0].received_at if batch.records else datetime.now().astimezone()
    times = [r.received_at for r in batch.records]
    each = pa.array(times, pa.timestamp("us", tz="UTC")) if any(t != received for t in times) else None
    ids = pa.array([r.external_id for r in batch.records], pa.string())
    return ColumnBatch(
        table=table,
        ids=ids,
        state=batch.state,
        received_at=received,
        payloads=payloads,
        children=children,
        present=present,
        numeric=frozenset(numeric),
        rejected=list(batch.rejected),
        opaque=frozenset(opaque),
        received=each,
    )


def from_nested(batch: ColumnBatch, list_fields: Collection[str]) -> ColumnBatch | None:
    """A batch parsed into nested Arrow columns (a JSON-lines source's ``JsonlColumns``) laid out
    as :func:`from_rows` lays out the same records: objects flattened to dotted columns (the object
    itself opaque), each of the mapping's lists a child table, other lists opaque. None when a
    list field is not a list of objects in every record that has it (the row path's rule)."""
    import pyarrow.compute as pc

    table: pa.Table = batch.table
    n = table.num_rows
    children: dict[str, pa.Table] = {}
    present: dict[str, pa.Array] = {}
    opaque: set[str] = set()
    for name in list_fields:
        if name not in table.column_names:
            children[name] = pa.table({"__empty": pa.nulls(0), "__row": pa.array([], pa.int32())})
            present[name] = pa.array([False] * n, pa.bool_())
            continue
        col = table.column(name).combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
            if col.null_count != len(col):
                return None
            children[name] = pa.table({"__empty": pa.nulls(0), "__row": pa.array([], pa.int32())})
            present[name] = pa.array([False] * n, pa.bool_())
            table = table.drop_columns([name])
            continue
        elements = pc.list_flatten(col)
        parents = pc.list_parent_indices(col)
        if pa.types.is_null(elements.type) and len(elements) == 0:
            child = pa.table({"__empty": pa.nulls(0)})
        elif not pa.types.is_struct(elements.type) or elements.null_count:
            return None  # elements that are not objects
        else:
            child, child_opaque = _flatten(pa.Table.from_struct_array(elements))
            opaque |= {f"{name}.{c}" for c in child_opaque}
        children[name] = child.append_column("__row", parents.cast(pa.int32()))
        present[name] = col.is_valid()
        table = table.drop_columns([name])
    table, top_opaque = _flatten(table)
    opaque |= top_opaque
    if table.num_columns == 0:
        table = pa.table({"__empty": pa.nulls(n)})
    return ColumnBatch(
        table=table,
        ids=batch.ids,
        state=batch.state,
        received_at=batch.received_at,
        payloads=None,
        children=children,
        present=present,
        numeric=frozenset(),
        rejected=list(batch.rejected),
        opaque=frozenset(opaque),
        load_payloads=batch.load_payloads,
    )


def _flatten(table: pa.Table) -> tuple[pa.Table, set[str]]:
    """Objects as dotted columns (``store.code``; the object itself opaque, as ``_flat`` keeps it
    whole), lists opaque and out of the columns, all-null columns as text."""
    opaque: set[str] = set()
    while True:
        names = table.column_names
        structs = [c for c in names if pa.types.is_struct(table.schema.field(c).type)]
        lists = [
            c
            for c in names
            if pa.types.is_list(table.schema.field(c).type) or pa.types.is_large_list(table.schema.field(c).type)
        ]
        if lists:
            opaque |= set(lists)
            table = table.drop_columns(lists)
        if not structs:
            break
        opaque |= set(structs)
        table = table.flatten()  # one level: a.b, with the object's nulls
    for i, f in enumerate(table.schema):
        if pa.types.is_null(f.type):
            table = table.set_column(i, f.name, pa.nulls(table.num_rows, pa.string()))
    return table, opaque
