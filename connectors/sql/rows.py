"""Rows to records fast: plain values straight from psycopg's type OIDs, and code generated per
query to turn row tuples into dicts and fold header / line rows (user text enters only as data)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

from connectors.sql.values import _AS_IS, _plain
from hub.errors import PermanentError

Rows = Sequence[Sequence[Any]]

# PostgreSQL types psycopg loads as None / str / int / float / bool / Decimal / datetime / date: kept
# as they come. Other columns (uuid, bytea, interval, time...) go through _plain.
_PG_PLAIN_TYPES = [
    "bool",
    "int2",
    "int4",
    "int8",
    "oid",
    "float4",
    "float8",
    "numeric",
    "text",
    "varchar",
    "bpchar",
    "name",
    "date",
    "timestamp",
    "timestamptz",
]
_pg_plain_oids: frozenset[int] | None = None


def _pg_convert(description: Sequence[Any]) -> Callable[[Rows], Rows] | None:
    """None when every column of ``description`` loads as a plain value; else a function converting
    the other columns of a list of rows with ``_plain``."""
    global _pg_plain_oids
    if _pg_plain_oids is None:
        from psycopg.postgres import types

        _pg_plain_oids = frozenset(types[name].oid for name in _PG_PLAIN_TYPES)
    odd = [i for i, d in enumerate(description) if d.type_code not in _pg_plain_oids]
    if not odd:
        return None

    def convert(rows: Rows) -> Rows:
        out = []
        for row in rows:
            values = list(row)
            for i in odd:
                values[i] = _plain(values[i])
            out.append(values)
        return out

    return convert


def _plain_rows(rows: Rows) -> Rows:
    """``rows`` as they are when every value is plain (one scan of the values), else with ``_plain``
    applied to each value."""
    if _AS_IS.issuperset(map(type, chain.from_iterable(rows))):
        return rows
    return [[_plain(v) for v in row] for row in rows]


def _fold_children(
    key: str, columns: list[str], rows: Rows, by_key: dict[Any, list[dict[str, Any]]]
) -> dict[Any, list[dict[str, Any]]]:
    """Append each child row (as a dict) to the list of its ``key`` value."""
    if key not in columns:
        raise PermanentError(f"the child query has no column {key!r} (columns: {columns})")
    names = {f"k{i}": c for i, c in enumerate(columns)}
    values = _unpack(len(columns))
    fold = _generated(
        f"""
def fold(rows, by_key):
    last = cur = marker
    for {values} in rows:
        if v{columns.index(key)} != last:
            last = v{columns.index(key)}
            cur = by_key.get(last)
            if cur is None:
                cur = by_key[last] = []
        cur.append({{{_items(range(len(columns)))}}})
    return by_key
""",
        "fold",
        names,
    )
    return fold(rows, by_key)


# Code generated for the columns of a query: a dict display per row is twice as fast as
# dict(zip(names, row)), and one loop over the rows saves a call per record. Only indexes go into
# the source (v3, k3); the column names are bound as k0, k1... in the namespace it runs in.


@functools.lru_cache(maxsize=128)
def _code(source: str) -> Any:
    return compile(source, "<connectors.sql generated>", "exec")


def _generated(source: str, name: str, names: dict[str, Any]) -> Any:
    ns: dict[str, Any] = {**names, "marker": object()}
    exec(_code(source), ns)  # noqa: S102 - source made of indexes only, see above
    return ns[name]


def _unpack(width: int) -> str:
    return ", ".join(f"v{i}" for i in range(width)) + ("," if width == 1 else "")


def _items(picks: Iterable[int], offset: int = 0) -> str:
    """``k0: v3, k1: v5`` (name j + offset, value i)."""
    return ", ".join(f"k{j + offset}: v{i}" for j, i in enumerate(picks))


def _dicts_of(
    width: int, fields: Sequence[tuple[str, int]]
) -> Callable[[Iterable[Sequence[Any]]], list[dict[str, Any]]]:
    """A function turning rows of ``width`` values into dicts of ``fields`` (name, index)."""
    names = {f"k{j}": name for j, (name, _) in enumerate(fields)}
    source = f"def rows_to_dicts(rows):\n    return [{{{_items(i for _, i in fields)}}} for {_unpack(width)} in rows]\n"
    return _generated(source, "rows_to_dicts", names)


def _group_fold(
    width: int,
    header: Sequence[tuple[str, int]],
    lines: Sequence[tuple[str, int]],
    keys: Sequence[int],
    field_name: str,
) -> Callable[[Iterable[Sequence[Any]]], Iterator[dict[str, Any]]]:
    """A generator function folding rows (ordered by ``keys``) into one record per key: the
    ``header`` columns of its first row, and the list ``field_name`` of the ``lines`` columns of each
    row, but for rows whose line columns are all NULL (a LEFT JOIN without lines)."""
    n = len(header)
    names = {f"k{j}": c for j, (c, _) in enumerate(header)}
    names.update({f"k{n + j}": c for j, (c, _) in enumerate(lines)})
    names["field_name"] = field_name
    key = "(" + ", ".join(f"v{i}" for i in keys) + ",)"
    empty = " and ".join(f"v{i} is None" for _, i in lines)
    header_items = _items(i for _, i in header)
    source = f"""
def fold(rows):
    last = marker
    record = None
    for {_unpack(width)} in rows:
        key = {key}
        if key != last:
            if record is not None:
                yield record
            last = key
            items = []
            record = {{{header_items}{", " if header_items else ""}field_name: items}}
        if not ({empty}):
            items.append({{{_items((i for _, i in lines), n)}}})
    if record is not None:
        yield record
"""
    return _generated(source, "fold", names)
