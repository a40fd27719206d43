"""A mapping's second compilation: the same YAML, as vectorised expressions over Arrow columns.

``compile_vector(mapping)`` turns a :class:`~hub.mapping.CompiledMapping` into a
:class:`VectorMapping`, or explains why it cannot (:class:`Unsupported`: then the source keeps the
row path, and ``cxhub check`` says why). A vector mapping turns a batch of records held as Arrow
columns (:class:`ArrowRecords`: one row per record, and a table per nested list such as order
lines) into the JSON of each touchpoint, with its typed columns and identities, in a few passes
over whole columns instead of one Python call per field per record.

Exactly the row path's results, by construction:

- every value is computed by a fast vectorised form only where that form is known to give what
  the row path gives (text into a text field, PostgreSQL numeric text into a decimal, a timestamp
  into a date-time, an integer into an integer...); any other value is computed by the row path's
  own code (``FieldSpec.value`` and pydantic's validation of the target field), **once per distinct
  value** of the column, and spread back over the rows;
- a record that any step finds unusual (a value that fails coercion or validation, a required
  field missing, a lookup miss, a local time that does not exist) is *flagged*, and flagged
  records go through the row path whole: their quarantine reason is the row path's own reason.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AwareDatetime, BaseModel, TypeAdapter

from hub.errors import RecordError
from hub.mapping import CompiledMapping
from hub.mapping.specs import MISSING, FieldSpec
from hub.model import Customer, Feedback, Order, OrderItem, Org, TouchpointEvent
from hub.privacy import PHONE_PATTERN
from hub.sdk.columns import bytes_value
from hub.sdk.expressions import plain_keys

#: PostgreSQL's numeric text that ``str(Decimal(text))`` gives back unchanged
_CANONICAL_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
#: ... but for the small ones it prints with an exponent (0.0000001 is 1E-7, 0.0000000 is 0E-7)
_TINY_DECIMAL = r"^-?0\.0{6}[0-9]"
#: what JSON text needs escaped that the vectorised escaping below does not cover
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
#: a local date and time as ISO text in the form both parsers read alike (``datetime.fromisoformat``)
_ISO_LOCAL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{3}|\.[0-9]{6})?$"
#: what JSON text needs escaped at all
_NEEDS_ESCAPE = r'[\\"\x00-\x1f]'


class Unsupported(Exception):
    """The mapping uses something the vector compiler does not express; ``reason`` says what."""


@dataclass
class ArrowRecords:
    """A batch of records as Arrow columns.

    ``table``: one row per record, its columns the record's fields; ``children``: per nested list
    field (``lines``), a table of the list's elements with an ``__row`` column (int32, the index of
    the record in ``table``), in record order; ``present``: per nested list field, whether the
    record has the list at all (default: every record has it); ``numeric``: columns holding
    PostgreSQL ``numeric`` values as text; ``payloads``: the records as the row path reads them,
    when the source has them at hand (else they are rebuilt from the columns)."""

    table: pa.Table
    children: dict[str, pa.Table] = field(default_factory=dict)
    present: dict[str, pa.Array] = field(default_factory=dict)
    numeric: frozenset[str] = frozenset()
    payloads: list[dict[str, Any]] | None = None
    #: the keys records hold that are no column (nested values), a child's as ``child.key``; None:
    #: not known, any key may be held outside the columns
    opaque: frozenset[str] | None = None
    #: reads the records as the row path does, when ``payloads`` is None (a JSON-lines batch)
    loader: Callable[[], list[Any]] | None = None

    def opaque_of(self, child: str | None = None) -> frozenset[str] | None:
        """The opaque keys of the records (with the nested lists) or of a child's elements."""
        if self.opaque is None:
            return None
        if child is None:  # a child's keys are named child.key; a flattened object's are dotted too
            return frozenset(c for c in self.opaque if c.split(".", 1)[0] not in self.children) | frozenset(
                self.children
            )
        prefix = child + "."
        return frozenset(c[len(prefix) :] for c in self.opaque if c.startswith(prefix))

    def numeric_of(self, child: str | None = None) -> frozenset[str]:
        """The numeric columns of the records (``numeric`` names a child's as ``child.column``)."""
        if child is None:
            return frozenset(c for c in self.numeric if "." not in c)
        prefix = child + "."
        return frozenset(c[len(prefix) :] for c in self.numeric if c.startswith(prefix))

    def all_payloads(self) -> list[dict[str, Any]]:
        """Every record as the row path reads it (built once, in bulk, when the source has none)."""
        if self.payloads is None and self.loader is not None:
            self.payloads = self.loader()
        if self.payloads is None:
            recs = _py_row(self.table, self.numeric_of())
            for name, child in self.children.items():
                present = self.present.get(name)
                has = present.to_pylist() if present is not None else [True] * len(recs)
                for rec, flag in zip(recs, has, strict=True):
                    if flag:
                        rec[name] = []
                parents = child["__row"].to_pylist()
                for parent, el in zip(
                    parents, _py_row(child.drop_columns(["__row"]), self.numeric_of(name)), strict=True
                ):
                    recs[parent][name].append(el)
            self.payloads = recs
        return self.payloads

    def payload(self, i: int) -> dict[str, Any]:
        """Record ``i`` as the row path reads it: a dict, with each nested list as a list of dicts."""
        if self.payloads is not None or self.loader is not None:
            return self.all_payloads()[i]
        rec = _py_row(self.table.slice(i, 1), self.numeric_of())[0]
        for name, child in self.children.items():
            if name in self.present and not self.present[name][i].as_py():
                continue
            rows = child.filter(pc.equal(child["__row"], i)).drop_columns(["__row"])
            rec[name] = _py_row(rows, self.numeric_of(name))
        return rec


def _py_row(table: pa.Table, numeric: frozenset[str]) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    cols = [c for c in table.column_names if c in numeric]
    raw = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    for row in rows:
        for c in cols:
            if row[c] is not None:
                row[c] = _decimal(row[c])
        for c in raw:
            if row[c] is not None:
                row[c] = bytes_value(row[c])
    return rows


def _decimal(text: str) -> Decimal | str:
    """A numeric column's text as the Decimal the row read gets (text that is no number stays text)."""
    try:
        return Decimal(text)
    except ArithmeticError:
        return text


# ---------------------------------------------------------------- the touchpoint's JSON layout


def _annotation(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields[name]
    return Annotated[info.annotation, info]


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    key = repr(annotation)
    found = _ADAPTERS.get(key)
    if found is None:
        found = _ADAPTERS[key] = TypeAdapter(annotation)
    return found


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}

#: the submodels of the event a mapping writes into, and their position in its JSON
_SUBMODELS: dict[str, type[BaseModel]] = {"customer": Customer, "org": Org, "order": Order, "feedback": Feedback}
#: targets whose model checks more than each field alone (Feedback's rating against its scale)
_MODEL_CHECKED = {"feedback"}


@functools.cache
def _default_json(model: type[BaseModel], name: str) -> str | None:
    """The JSON of the model's default for ``name``; None when the field is required."""
    info = model.model_fields[name]
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    return _adapter(_annotation(model, name)).dump_json(value).decode()


def _json_str(expr: pl.Expr) -> pl.Expr:
    """A JSON string literal of each text value (null stays null)."""
    escaped = (
        expr.str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all('"', '\\"', literal=True)
        .str.replace_all("\n", "\\n", literal=True)
        .str.replace_all("\r", "\\r", literal=True)
        .str.replace_all("\t", "\\t", literal=True)
    )
    return pl.concat_str([pl.lit('"'), escaped, pl.lit('"')])


def const(value: Any, n: int, dtype: Any = None) -> pl.Series:
    """``value`` ``n`` times, as ``pl.repeat(value, n, eager=True)`` gives it, without the query
    that costs (~0.2-0.35 ms of thread-pool round trips on 2 cores; a batch makes dozens)."""
    return pl.Series("literal", [value], dtype=dtype).new_from_index(0, n)


def json_text(values: pl.Series) -> pl.Series:
    """JSON string literals of a text column (control characters escaped the slow way, rarely).
    A column with nothing to escape (most: codes, names, ids) is only quoted."""
    if not values.str.contains(_NEEDS_ESCAPE).any():
        return pl.select(pl.concat_str([pl.lit('"'), pl.lit(values), pl.lit('"')])).to_series()
    out = pl.select(_json_str(pl.lit(values))).to_series()
    odd = values.str.contains(_CONTROL).fill_null(False)
    if odd.any():
        idx = odd.arg_true().to_list()
        fixed = [orjson.dumps(v).decode() for v in values.gather(idx).to_list()]
        out = out.scatter(idx, fixed)
    return out


# ---------------------------------------------------------------- the columns of a batch


class _Cols:
    """One table of a batch (the records, or a nested list's elements) for the fused queries.

    Mapping a batch builds Polars *expressions* over this table rather than computing each step
    at once: every eager step on a Series is a query of its own, with ~0.1-0.3 ms of thread-pool
    round trips, and a mapping has dozens of steps per field. So a batch runs a handful of queries:
    one that asks what the data holds (:meth:`probe`: does a column need JSON escaping, is every
    decimal canonical), one per nested list, and one that builds every output column
    (:meth:`select`). Values only the row path's code computes (per distinct value, per record)
    are computed in Python and join the table as columns of their own (:meth:`add`)."""

    def __init__(
        self,
        table: pa.Table,
        numeric: frozenset[str],
        opaque: frozenset[str] | None,
        rows: Callable[[], list[dict[str, Any]]],
    ):
        self.table = table
        self.n = table.num_rows
        self.numeric = numeric
        self.opaque = opaque
        self.rows = rows
        self._series: dict[str, pl.Series] = {}
        self._extra: list[pl.Series] = []
        self._probes: list[pl.Expr] = []
        self.found: dict[str, Any] = {}

    def series(self, name: str) -> pl.Series:
        """The Arrow column ``name`` as a Polars Series (converted once)."""
        found = self._series.get(name)
        if found is None:
            found = self._series[name] = typing.cast(pl.Series, pl.from_arrow(self.table[name])).alias(name)
        return found

    def col(self, name: str) -> pl.Expr:
        """The Arrow column ``name`` in the expressions."""
        self.series(name)
        return pl.col(name)

    def add(self, values: pl.Series) -> pl.Expr:
        """A column computed outside the expressions, in the expressions."""
        name = f"\x00cxhub{len(self._extra)}"
        self._extra.append(values.alias(name))
        return pl.col(name)

    def probe(self, expr: pl.Expr) -> str:
        """A scalar the plan needs before it builds its expressions; read from :attr:`found`
        under the returned key after :meth:`run_probes`."""
        name = f"\x00probe{len(self._probes)}"
        self._probes.append(expr.alias(name))
        return name

    def run_probes(self) -> None:
        if self._probes:
            self.found.update(self._frame().select(self._probes).row(0, named=True))
            self._probes = []

    def _frame(self) -> pl.DataFrame:
        # a column of the table's height first: a frame of constants alone would have one row
        return pl.DataFrame([const(None, self.n, pl.Null).alias("\x00height"), *self._series.values(), *self._extra])

    def lazy(self, *stages: dict[str, pl.Expr]) -> pl.LazyFrame:
        """The columns of ``stages`` (each may read the ones before; constants broadcast to the
        table's height) as one query, keeping the last stage's columns."""
        frame = self._frame().lazy()
        for stage in stages:
            frame = frame.with_columns(**stage)
        return frame.select(list(stages[-1]))

    def select(self, *stages: dict[str, pl.Expr]) -> pl.DataFrame:
        return self.lazy(*stages).collect()


def _quoted(text: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit('"'), text, pl.lit('"')])


# ---------------------------------------------------------------- one field


@dataclass
class Built:
    """One field of every row of a batch: its JSON fragment, the rows the row path decides, and
    the value itself when it is at hand without decoding the fragment.

    A ``str`` / None fragment is the same for every row (a constant; None: missing), and a
    ``bool`` flag likewise: they join the JSON text as text, not as a column."""

    frag: pl.Expr | str | None
    bad: pl.Expr | bool
    #: the value where the fragment is not null: a text field's text, a time's UTC time
    plain: pl.Expr | None = None


#: computes a field once the probes it asked for have run
Build = Callable[[], Built]


@dataclass
class Leaf:
    """One target field of the mapping, as columns: JSON fragments (null: the field is missing) and
    a flag per row (the row path must decide this record)."""

    spec: FieldSpec
    adapter: TypeAdapter[Any]
    #: the source column (a plain one-key path); None: a constant, a template or another expression
    column: str | None
    #: the fragment of the spec's default, or a flag when the default does not validate
    default_frag: str | None
    default_bad: bool

    def plan(self, c: _Cols) -> Build:
        """How the field is computed over ``c``: a vectorised form where one fits the column's type,
        else the row path's own code (once per distinct value, or per record)."""
        spec = self.spec
        if spec.is_const or (self.column is not None and c.opaque is not None and self._absent(c.table, c.opaque)):
            # a constant, or a key no record holds (the source has no such column): the row
            # path's own value of a record without it, once
            frag, bad = self._one({})
            constant = Built(frag, bad)  # its text, where a typed column wants it: :func:`_text_of`
            return lambda: constant
        if self.column is None or self.column not in c.table.column_names:
            # templates, expressions, paths into values that are not columns (a list, a key no
            # record has): the row path's own value, per record
            f = self._per_record(c.rows())
            per_record = Built(c.add(f.frag), c.add(f.bad))
            return lambda: per_record
        numeric = self.column in c.numeric
        fast = None if spec.lookup is not None else self._fast(c, self.column, numeric)
        if fast is not None:
            return fast
        return lambda: self._slow(c, numeric)

    def _slow(self, c: _Cols, numeric: bool) -> Built:
        assert self.column is not None
        column = c.table[self.column]
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        f = self._distinct(arr, numeric)
        return Built(c.add(f.frag), c.add(f.bad))

    def _absent(self, table: pa.Table, opaque: frozenset[str]) -> bool:
        """No record holds the path. The columns hold every key of the records but ``opaque``
        ones (objects kept whole, lists), and an object's keys as dotted columns: a path none
        of whose prefixes is a column or opaque, or that goes on through flattened objects to a
        key none of them has, is in no record."""
        return path_absent(self.spec.keys or (), table.column_names, opaque)

    # the fragment and flag of one record's value (``data``) through the row path's own code
    def _one(self, data: dict[str, Any]) -> tuple[str | None, bool]:
        try:
            v = self.spec.value(data, data)
        except RecordError:
            return None, True
        if v is MISSING:
            return None, False
        try:
            return self.adapter.dump_json(self.adapter.validate_python(v)).decode(), False
        except (ValueError, TypeError):
            return None, True

    def _distinct(self, arr: pa.Array, numeric: bool) -> Frag:
        """Each distinct value through the row path's code once, spread back over the rows (each
        value, where Arrow cannot tell distinct ones apart: lists)."""
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_struct(arr.type):
            values: list[Any] = arr.to_pylist()
            idx: Any = None
        else:
            enc = pc.dictionary_encode(arr, null_encoding="encode")
            values, idx = enc.dictionary.to_pylist(), enc.indices
        keys = self.spec.keys or ("",)
        frags: list[str | None] = []
        bads: list[bool] = []
        for raw in values:
            if numeric and raw is not None:
                raw = _decimal(raw)
            elif isinstance(raw, bytes):  # bytea: its text, or base64 (the row read's form)
                raw = bytes_value(raw)
            data: Any = raw
            for k in reversed(keys):
                data = {k: data}
            frag, bad = self._one(data)
            frags.append(frag)
            bads.append(bad)
        if idx is None:
            return Frag(pl.Series(frags, dtype=pl.String), pl.Series(bads, dtype=pl.Boolean))
        return Frag(
            pl.from_arrow(pc.take(pa.array(frags, pa.string()), idx)),  # type: ignore[arg-type]
            pl.from_arrow(pc.take(pa.array(bads, pa.bool_()), idx)),  # type: ignore[arg-type]
        )

    def _per_record(self, rows: list[dict[str, Any]]) -> Frag:
        frags: list[str | None] = []
        bads: list[bool] = []
        for r in rows:
            frag, bad = self._one(r)
            frags.append(frag)
            bads.append(bad)
        return Frag(pl.Series(frags, dtype=pl.String), pl.Series(bads, dtype=pl.Boolean))

    def _fast(self, c: _Cols, name: str, numeric: bool) -> Build | None:
        """The vectorised forms, each only where it gives what the row path gives; None: none fits.
        Each gives a null fragment where the value is null."""
        kind = self.spec.type
        target = _target_kind(self.adapter)
        t = c.table.schema.field(name).type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if (numeric and kind in ("decimal", "str", "json") and target in ("decimal", "str", "any")) or (
                kind == "decimal" and target == "decimal"
            ):
                # PostgreSQL numeric text, or a decimal as text (JSON amounts): Decimal(text)
                # prints as the text when canonical
                col = c.col(name)
                canonical = c.probe(
                    (col.str.contains(_CANONICAL_DECIMAL) & ~col.str.contains(_TINY_DECIMAL)).fill_null(True).all()
                )

                def decimal() -> Built:
                    if not c.found[canonical]:
                        return self._slow(c, numeric)
                    return self._combine(_quoted(col), col)

                return decimal
            if numeric:
                return None
            if kind == "datetime" and target == "datetime" and self.spec.fmt is None:
                # ISO local times as text (JSON exports, CSV): parsed here when every one has the
                # plain form, else each distinct one by the row path's own parser
                col = c.col(name)
                plain_form = c.probe(col.str.contains(_ISO_LOCAL).fill_null(True).all())

                def local_text() -> Built:
                    if not c.found[plain_form]:
                        return self._slow(c, False)
                    local = col.str.replace("T", " ", literal=True).str.to_datetime(
                        "%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False
                    )
                    built = self._local_time(local, col)
                    built.bad = _or(built.bad, local.is_null() & col.is_not_null())  # no such day: its error
                    return built

                return local_text
            if kind in ("str", "json") and target in ("str", "any"):
                col = c.col(name)
                escape = c.probe(col.str.contains(_NEEDS_ESCAPE).any())

                def text() -> Built:
                    # most columns (codes, names, ids) have nothing to escape and are only quoted;
                    # a control character is escaped by the row path's JSON (rarely)
                    if not c.found[escape]:
                        return self._combine(_quoted(col), col, col)
                    built = self._combine(_json_str(col), col, col)
                    built.bad = _or(built.bad, col.str.contains(_CONTROL).fill_null(False))
                    return built

                return text
            return None
        if pa.types.is_integer(t) and not numeric:
            col = c.col(name)
            if kind in ("int", "json") and target in ("int", "any", "decimal_int"):
                return lambda: self._combine(col.cast(pl.String), col)
            if (kind == "str" and target in ("str", "any")) or (kind in ("decimal", "int") and target == "decimal"):
                return lambda: self._combine(_quoted(col.cast(pl.String)), col, col.cast(pl.String))
            return None
        if pa.types.is_timestamp(t) and kind == "datetime" and target == "datetime" and self.spec.fmt is None:
            col = c.col(name)
            if t.tz is None:
                return lambda: self._local_time(col, col, t.unit == "us")

            def aware() -> Built:
                utc = col.dt.convert_time_zone("UTC")
                # the UTC time itself beside the text, in the unit the typed column holds
                return self._combine(_quoted(iso_utc(utc)), col, utc if t.unit == "us" else None)

            return aware
        if pa.types.is_timestamp(t) and kind == "json" and target == "any" and t.tz is None:
            col = c.col(name)
            return lambda: self._combine(_quoted(iso_naive(col)), col)
        if pa.types.is_boolean(t) and kind in ("bool", "json") and target in ("bool", "any"):
            col = c.col(name)
            return lambda: self._combine(pl.when(col).then(pl.lit("true")).when(~col).then(pl.lit("false")), col)
        return None

    def _local_time(self, local: pl.Expr, col: pl.Expr, micros: bool = True) -> Built:
        """Naive times ``local`` (from ``col``) in the field's zone: the earlier of an ambiguous
        time, as the row path's parser; a time that does not exist is the row path's."""
        utc = local.dt.replace_time_zone(self.spec.tz.key, ambiguous="earliest", non_existent="null")
        utc = utc.dt.convert_time_zone("UTC")
        built = self._combine(_quoted(iso_utc(utc)), col, utc if micros else None)
        built.bad = _or(built.bad, utc.is_null() & local.is_not_null())
        return built

    def _combine(self, frag: pl.Expr, col: pl.Expr, plain: pl.Expr | None = None) -> Built:
        """``frag`` (null where ``col`` is) where the value is missing: the default, a flag when it
        is required (or its default does not validate), or no fragment."""
        spec = self.spec
        missing = col.is_null()
        if spec.default is not MISSING:
            out = pl.when(missing).then(pl.lit(self.default_frag, pl.String)).otherwise(frag)
            return Built(out, missing if self.default_bad else False)
        return Built(frag, missing if spec.required else False, plain)


def _or(a: pl.Expr | bool, b: pl.Expr | bool) -> pl.Expr | bool:
    if a is False:
        return b
    if b is False:
        return a
    return True if a is True or b is True else typing.cast(pl.Expr, a) | b


def iso_utc(utc: pl.Expr) -> pl.Expr:
    """``2026-01-01T00:00:01Z`` / ``...01.500000Z``: how the event's JSON writes an aware time."""
    whole = utc.dt.to_string("%Y-%m-%dT%H:%M:%SZ")
    frac = utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")
    return pl.when(utc.dt.microsecond() == 0).then(whole).otherwise(frac)


def iso_naive(ts: pl.Expr) -> pl.Expr:
    whole = ts.dt.to_string("%Y-%m-%dT%H:%M:%S")
    frac = ts.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
    return pl.when(ts.dt.microsecond() == 0).then(whole).otherwise(frac)


def _target_kind(adapter: TypeAdapter[Any]) -> str:
    """What the target field holds, as the fast forms need to know it."""
    return getattr(adapter, "_cxhub_kind", "other")


def _kind_of(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kind_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind_of(args[0]) if len(args) == 1 else "other"
    if annotation is Any:
        return "any"
    if annotation is str:
        return "str"
    if annotation is Decimal:
        return "decimal"
    if annotation is int:
        return "int"
    if annotation is bool:
        return "bool"
    if annotation is AwareDatetime or (isinstance(annotation, type) and issubclass(annotation, datetime)):
        return "datetime"
    return "other"


@dataclass
class Frag:
    """JSON fragments of one field per row (null: missing) and the rows the row path must decide."""

    frag: pl.Series
    bad: pl.Series


def _leaf(spec: FieldSpec, annotation: Any) -> Leaf:
    adapter = _adapter(annotation)
    kind = _kind_of(annotation)
    if kind == "other":
        inner = typing.get_args(annotation)[1:] if typing.get_origin(annotation) is Annotated else ()
        for meta in inner:
            if getattr(meta, "annotation", None) is not None:
                kind = _kind_of(meta.annotation)
    adapter._cxhub_kind = kind  # type: ignore[attr-defined]
    # a plain path reads the column of that name; a nested one (a.b) the flattened column "a.b"
    column = ".".join(spec.keys) if spec.keys is not None and not spec.is_const else None
    dfrag: str | None = None
    dbad = False
    if spec.default is not MISSING:
        try:
            dfrag = adapter.dump_json(adapter.validate_python(spec.default)).decode()
        except (ValueError, TypeError):
            dbad = True
    return Leaf(spec, adapter, column, dfrag, dbad)


# ---------------------------------------------------------------- the mapping


@dataclass
class ListLeaves:
    target: str  # order.items
    field: str  # the record's list field (lines)
    leaves: dict[str, Leaf]
    when: Callable[[Any], Any] | None


@dataclass
class IdentityLeaf:
    namespace: str
    leaf: Leaf
    #: the app the identity belongs to (``scope:``), a field of its own
    scope: Leaf | None = None


@dataclass
class VectorMapping:
    """A mapping compiled for columns (see the module docstring)."""

    mapping: CompiledMapping
    #: target -> leaf, top level (kind, channel, occurred_at, org.store, attributes.x...)
    leaves: dict[str, Leaf]
    lists: list[ListLeaves]
    identities: list[IdentityLeaf]
    when: Callable[[Any], Any] | None

    def map(self, records: ArrowRecords) -> Mapped:
        return _map(self, records)


@dataclass
class Mapped:
    """What :meth:`VectorMapping.map` gives for a batch: per record (in batch order) the JSON of its
    touchpoint split around its customer id, the typed columns, identities, and its outcome."""

    #: "ok" (mapped here), "filtered" (``when`` skipped it), "row" (the row path decides)
    status: pl.Series
    head: pl.Series  # the event's JSON up to '"customer_id":'
    tail: pl.Series  # and after it
    columns: pl.DataFrame  # kind, channel, occurred_at (UTC datetime), store
    #: per identity spec: the plain value (null: none) of each record
    identities: list[tuple[str, pl.Series, pl.Series | None]]


def compile_vector(mapping: CompiledMapping) -> VectorMapping:
    """The mapping for columns; :class:`Unsupported` with the reason when a feature of it has no
    vectorised form (the source then keeps the row path)."""
    leaves: dict[str, Leaf] = {}
    for spec in [mapping.kind, *mapping.fields] if mapping.kind is not None else mapping.fields:
        leaves[spec.target] = _leaf(spec, _target_annotation(spec.target))
    lists = []
    for lst in mapping.lists:
        if lst.each_keys is None or len(lst.each_keys) != 1:
            raise Unsupported(f"{lst.target}: `each: {lst.target}` is not a plain field of the record")
        if lst.target != "order.items":
            raise Unsupported(f"{lst.target}: only order.items is a list the vector path builds")
        sub: dict[str, Leaf] = {}
        for spec in lst.fields:
            if spec.is_root:
                raise Unsupported(f"{lst.target}.{spec.target}: `root: true` reads the record from an item")
            sub[spec.target] = _leaf(spec, _annotation(OrderItem, spec.target))
        lists.append(ListLeaves(lst.target, lst.each_keys[0], sub, lst.when))
    idents = []
    for ident in mapping.identities:
        known = ("namespace", "spec", "scope", "scope_option")
        extra = {k: v for k, v in vars(ident).items() if k not in known and v not in (None, "", ())}
        if extra:
            raise Unsupported(f"customer.identities.{ident.namespace}: {sorted(extra)} are not vectorised")
        scope = getattr(ident, "scope", None)
        idents.append(
            IdentityLeaf(ident.namespace, _leaf(ident.spec, str), _leaf(scope, str) if scope is not None else None)
        )
    targets = set(leaves) | {lst.target for lst in lists}
    for t in targets:
        top = t.split(".")[0]
        if top in _MODEL_CHECKED:
            raise Unsupported(f"{t}: the feedback fields are checked together (rating against its scale)")
        if t in ("customer.identities", "order", "org", "customer", "attributes"):
            raise Unsupported(f"{t}: a whole object is written by one expression")
        if t.count(".") > 1:
            raise Unsupported(f"{t}: nested deeper than the vector path builds")
    if "occurred_at" not in leaves or "kind" not in leaves:
        raise Unsupported("kind and occurred_at are required")
    return VectorMapping(mapping, leaves, lists, idents, mapping.when)


def _target_annotation(target: str) -> Any:
    parts = target.split(".")
    if len(parts) == 1:
        return _annotation(TouchpointEvent, parts[0])
    top, name = parts[0], parts[1]
    if top == "attributes":
        return Any
    model = _SUBMODELS.get(top)
    if model is None or name not in model.model_fields:
        raise Unsupported(f"{target}: not a field the vector path knows")
    return _annotation(model, name)


# ---------------------------------------------------------------- mapping a batch


def _rows_of(table: pa.Table, numeric: frozenset[str]) -> Callable[[], list[dict[str, Any]]]:
    cache: list[list[dict[str, Any]]] = []

    def rows() -> list[dict[str, Any]]:
        if not cache:
            cache.append(_py_row(table, numeric))
        return cache[0]

    return rows


#: a field's fragments: an expression, or the same text for every row (None: missing in every row)
Fragment = pl.Expr | str | None


def _concat(parts: list[pl.Expr | str]) -> pl.Expr:
    """The text of ``parts`` joined per row (null where an expression is), adjacent constant texts
    joined first: a literal in ``concat_str`` is a column of its own."""
    merged: list[pl.Expr | str] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if len(merged) == 1 and isinstance(merged[0], str):
        return pl.lit(merged[0])
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in merged])


def _or_default(frag: Fragment, default: str) -> pl.Expr | str:
    if frag is None:
        return default
    return frag if isinstance(frag, str) else frag.fill_null(pl.lit(default))


def _obj(model: type[BaseModel], prefix: str, frags: dict[str, Fragment]) -> tuple[pl.Expr, pl.Expr | bool]:
    """The JSON object of a submodel (every field, defaults where missing) and whether any of its
    fields was written (an optional submodel is null otherwise)."""
    parts: list[pl.Expr | str] = ["{"]
    written: pl.Expr | bool = False
    for i, name in enumerate(model.model_fields):
        key = f"{prefix}.{name}"
        default = _default_json(model, name)
        parts.append(("" if i == 0 else ",") + orjson.dumps(name).decode() + ":")
        frag = frags.get(key)
        if isinstance(frag, pl.Expr):
            written = _or(written, frag.is_not_null())
        elif frag is not None:
            written = True
        parts.append(_or_default(frag, default if default is not None else "null"))
    parts.append("}")
    return _concat(parts), written


def _python_when(
    when: Callable[[Any], Any], rows: list[dict[str, Any]], c: _Cols, bads: list[pl.Expr | bool]
) -> pl.Expr:
    """A ``when`` the vector forms do not evaluate, per record; a record it raises on is the row
    path's (which raises it). Which records it keeps, as a column of ``c``."""
    keep = []
    odd = []
    for r in rows:
        try:
            keep.append(bool(when(r)))
            odd.append(False)
        except Exception:  # the row path raises it: let it
            keep.append(True)
            odd.append(True)
    bads.append(c.add(pl.Series(odd, dtype=pl.Boolean)))
    return c.add(pl.Series(keep, dtype=pl.Boolean))


def _any(bads: list[pl.Expr | bool]) -> pl.Expr:
    exprs = [b for b in bads if isinstance(b, pl.Expr)]
    if any(b is True for b in bads):
        return pl.lit(True)
    return pl.any_horizontal(exprs) if exprs else pl.lit(False)


def _map(vm: VectorMapping, records: ArrowRecords) -> Mapped:
    table = records.table
    n = table.num_rows
    c = _Cols(table, records.numeric_of(), records.opaque_of(), records.all_payloads)
    # what each field needs to know of the data, asked in one query
    plans = {target: leaf.plan(c) for target, leaf in vm.leaves.items()}
    ident_plans = [
        (il.namespace, il.leaf.plan(c), il.scope.plan(c) if il.scope is not None else None) for il in vm.identities
    ]
    keep = _when_expr(vm.mapping.when_text, c) if vm.mapping.when_text is not None else None
    c.run_probes()
    # the query's first stage: each field's fragments, computed once for every place that reads them
    fields: dict[str, pl.Expr] = {}
    bads: list[pl.Expr | bool] = []
    frags: dict[str, Fragment] = {}
    built: dict[str, Built] = {}
    for target, build in plans.items():
        b = built[target] = build()
        bads.append(b.bad)
        if isinstance(b.frag, pl.Expr) and not b.frag.meta.is_column() and not b.frag.meta.is_literal():
            fields[f"frag:{target}"] = b.frag
            frags[target] = pl.col(f"frag:{target}")
        else:
            frags[target] = b.frag
    filtered: pl.Expr | bool = False
    if keep is not None:
        filtered = ~keep
    elif vm.when is not None:
        filtered = ~_python_when(vm.when, records.all_payloads(), c, bads)
    # nested lists: one JSON array per record, each a query of its own
    for lst in vm.lists:
        arrays, flagged = _items(lst, records, n)
        frags[lst.target] = c.add(arrays)
        bads.append(c.add(flagged))
    # the second: identities (the plain values; blank ones are no identity), the document's JSON
    # split around the customer id, the typed columns beside it
    out: dict[str, pl.Expr] = {}
    checks: list[pl.Expr | bool] = []
    for k, (_, value_plan, scope_plan) in enumerate(ident_plans):
        ident = _identity_text(value_plan(), f"ident{k}", out, bads, checks)
        if scope_plan is not None:  # a value without its app (or too long a one): the row path's reason
            scoped = _identity_text(scope_plan(), f"scope{k}", out, bads, checks)
            checks.append(ident.is_not_null() & (scoped.is_null() | (scoped.str.len_chars() > 128).fill_null(False)))
    kind = frags["kind"]
    occurred = frags["occurred_at"]
    for f in (kind, occurred):
        bads.append(f.is_null() if isinstance(f, pl.Expr) else f is None)
    org, _ = _obj(Org, "org", frags)
    order: pl.Expr | str = "null"
    if any(k.startswith("order.") for k in frags):
        order_obj, written = _obj(Order, "order", frags)
        order = order_obj if written is True else pl.when(written).then(order_obj).otherwise(pl.lit("null"))
    attrs = [(k.split(".", 1)[1], v) for k, v in frags.items() if k.startswith("attributes.")]
    for _, v in attrs:  # a phone number inside a text attribute: the row path masks it and seals it
        if isinstance(v, pl.Expr):
            bads.append(v.str.contains(PHONE_PATTERN).fill_null(False))
        elif v is not None and re.search(PHONE_PATTERN, v):
            bads.append(True)
    attr: pl.Expr | str = "{}"
    if attrs:
        pieces = [_concat([orjson.dumps(name).decode() + ":", v]) for name, v in attrs if v is not None]
        attr = _concat(["{", pl.concat_str(pieces, separator=",", ignore_nulls=True), "}"]) if pieces else "{}"
    head = _concat(
        [
            '"kind":',
            _or_default(kind, "null"),
            ',"channel":',
            _or_default(frags.get("channel"), _default_json(TouchpointEvent, "channel") or "null"),
            ',"occurred_at":',
            _or_default(occurred, "null"),
        ]
    )
    cust = [
        _or_default(frags.get(f"customer.{name}"), _default_json(Customer, name) or "null")
        for name in ("name", "member_level")
    ]
    tail = _concat(
        [
            ',"name":',
            cust[0],
            ',"member_level":',
            cust[1],
            '},"org":',
            org,
            ',"order":',
            order,
            ',"feedback":null,"attributes":',
            attr,
            ',"raw_ref":null}',
        ]
    )
    typed = {
        t: _text_of(built[t]) if t in built else (pl.lit(None, pl.String), False)
        for t in ("kind", "channel", "org.store")
    }
    for _, odd in typed.values():
        bads.append(odd)
    occurred_plain = built["occurred_at"].plain
    out |= {
        "head": head,
        "tail": tail,
        "kind": typed["kind"][0],
        "channel": typed["channel"][0],
        "store": typed["org.store"][0],
        "occurred_at": occurred_plain
        if occurred_plain is not None
        else (occurred if isinstance(occurred, pl.Expr) else pl.lit(occurred, pl.String))
        .str.strip_chars('"')
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False),
    }
    bad = _any(bads + checks)
    status = {
        "status": pl.when(_any([filtered]) & ~bad)
        .then(pl.lit("filtered"))
        .when(bad)
        .then(pl.lit("row"))
        .otherwise(pl.lit("ok"))
    }
    # the third: the outcome of each record
    frame = c.select(fields, out, status | {k: pl.col(k) for k in out})
    columns = pl.DataFrame([frame["kind"], frame["channel"], frame["occurred_at"], frame["store"]])
    idents = [
        (ns, frame[f"ident{k}"], frame[f"scope{k}"] if scope_plan is not None else None)
        for k, (ns, _, scope_plan) in enumerate(ident_plans)
    ]
    return Mapped(frame["status"], frame["head"], frame["tail"], columns, idents)


def _identity_text(
    built: Built, name: str, out: dict[str, pl.Expr], bads: list[pl.Expr | bool], checks: list[pl.Expr | bool]
) -> pl.Expr:
    """An identity's value (or scope) as the output column ``name`` (blank: none), with the rows
    the row path decides: an escaped value, one longer than the row path takes."""
    text, odd = _text_of(built)
    out[name] = pl.when(text == "").then(pl.lit(None, pl.String)).otherwise(text)
    column = pl.col(name)
    bads += [built.bad, odd]
    checks.append((column.str.len_chars() > 512).fill_null(False))
    return column


def _text_of(built: Built) -> tuple[pl.Expr, pl.Expr | bool]:
    """The text of a field of JSON strings (JSON null: null), and the rows whose fragment has an
    escape to decode (rare in codes, names and ids: those records are the row path's)."""
    if built.plain is not None:
        return built.plain, False
    frag = built.frag
    if not isinstance(frag, pl.Expr):
        text = orjson.loads(frag) if frag is not None else None
        text = text if isinstance(text, str) else None
        return pl.lit(text, pl.String), text is not None and re.search(_CONTROL, text) is not None
    plain = frag.str.strip_prefix('"').str.strip_suffix('"')
    text = pl.when(frag == "null").then(pl.lit(None, pl.String)).otherwise(plain)
    return text, frag.str.contains("\\", literal=True).fill_null(False)


def vector_when(
    expression: str, table: pa.Table, opaque: frozenset[str] | None, numeric: frozenset[str] = frozenset()
) -> pl.Series | None:
    """``expression`` (a mapping's ``when``) for every record at once: which records it keeps, as
    the row path's JMESPath would decide them; None when the expression has a form this does not
    evaluate (then it runs per record). Evaluated: comparisons of a plain path with a text, number
    or boolean literal (``status != 'VOID'``, ``total > `0```), and ``&&``, ``||``, ``!`` of them.
    ``opaque`` as for :meth:`Leaf.plan`: with None, a path that is no column is not evaluated;
    ``numeric`` columns (decimals as text) are not evaluated."""
    c = _Cols(table, numeric, opaque, list)
    keep = _when_expr(expression, c)
    if keep is None:
        return None
    return c.select({"keep": keep})["keep"]


def _when_expr(expression: str, c: _Cols) -> pl.Expr | None:
    """:func:`vector_when` as an expression over ``c`` (null: false)."""
    import jmespath

    try:
        node = typing.cast(dict[str, Any], jmespath.compile(expression).parsed)
    except Exception:  # compiled once already by the mapping: not expected
        return None
    try:
        return _when_node(node, c).fill_null(False)
    except _NotVector:
        return None


class _NotVector(Exception):
    pass


_ORDER_OPS = {"lt": "__lt__", "gt": "__gt__", "lte": "__le__", "gte": "__ge__"}


def _when_node(node: dict[str, Any], c: _Cols) -> pl.Expr:
    """A boolean expression (null: false) of the JMESPath ``node`` over ``c``'s columns."""
    kind = node["type"]
    if kind in ("and_expression", "or_expression"):
        a, b = (_when_node(child, c).fill_null(False) for child in node["children"])
        return (a & b) if kind == "and_expression" else (a | b)
    if kind == "not_expression":
        (inner,) = node["children"]
        return ~_when_node(inner, c).fill_null(False)
    if kind != "comparator":
        raise _NotVector
    left, right = node["children"]
    op = node["value"]
    if left["type"] == "literal" and right["type"] != "literal":
        left, right = right, left
        op = {"lt": "gt", "gt": "lt", "lte": "gte", "gte": "lte"}.get(op, op)
    keys = plain_keys(left)
    if keys is None or right["type"] != "literal":
        raise _NotVector
    literal = right["value"]
    name = ".".join(keys)
    if name in c.numeric:
        raise _NotVector  # Decimals on the row path
    col: pl.Expr
    if name in c.table.column_names:
        values = c.series(name)
        dtype: pl.DataType = values.dtype
        all_null = values.null_count() == c.n
        if dtype.is_float() and bool(values.is_nan().any()):
            raise _NotVector  # NaN orders above every number in Polars, and compares false in Python
        col = c.col(name)
    elif c.opaque is not None and path_absent(keys, c.table.column_names, c.opaque):
        dtype, all_null = pl.String(), True  # absent, or an object / list: no scalar
        col = pl.lit(None, pl.String)
    else:
        raise _NotVector
    is_text = dtype == pl.String
    is_bool = dtype == pl.Boolean
    is_number = dtype.is_numeric()
    lit_text = isinstance(literal, str)
    lit_bool = isinstance(literal, bool)
    lit_number = isinstance(literal, int | float) and not lit_bool
    if not (lit_text or lit_bool or lit_number):
        raise _NotVector  # null, lists, objects
    if op in ("eq", "ne"):
        # JMESPath equality: the same type and value (1 is not true, "1" is not 1); null equals no literal
        same = (is_text and lit_text) or (is_bool and lit_bool) or (is_number and lit_number)
        eq = (col == pl.lit(literal)).fill_null(False) if same else pl.lit(False)
        return ~eq if op == "ne" else eq
    if op in _ORDER_OPS:
        # ordering of two numbers or two texts; null when a side is neither (a text against a
        # number raises per record: those are the row path's)
        if (is_text and lit_text) or (is_number and lit_number):
            return typing.cast(pl.Expr, getattr(col, _ORDER_OPS[op])(pl.lit(literal)))
        if all_null or is_bool:
            return pl.lit(None, pl.Boolean)
    raise _NotVector


def path_absent(keys: tuple[str, ...], names: list[str], opaque: frozenset[str]) -> bool:
    """Whether no record holds the path ``keys`` (see :meth:`Leaf._absent`)."""
    if not keys:
        return False
    for j in range(1, len(keys) + 1):
        prefix = ".".join(keys[:j])
        if prefix in names:
            return False  # a column: its values decide
        flattened = any(c.startswith(prefix + ".") for c in names)
        if prefix in opaque and not flattened:
            return False  # an object kept whole or a list: the row path reads into it
        if not flattened:
            return True  # no record has this key
    return False


def _items(lst: ListLeaves, records: ArrowRecords, n: int) -> tuple[pl.Series, pl.Series]:
    """Each record's JSON array of items, and the records whose items the row path must decide."""
    child = records.children.get(lst.field)
    present = records.present.get(lst.field)
    if child is None:
        return const(None, n, pl.String), const(False, n)
    body = child.drop_columns(["__row"])
    child_numeric = records.numeric_of(lst.field)
    if records.payloads is not None or records.loader is not None:  # the elements as the source read them

        def rows() -> list[dict[str, Any]]:
            return [el for p in records.all_payloads() if isinstance(p.get(lst.field), list) for el in p[lst.field]]

    else:
        rows = _rows_of(body, child_numeric)
    c = _Cols(body, child_numeric, records.opaque_of(lst.field), rows)
    plans = {name: leaf.plan(c) for name, leaf in lst.leaves.items()}
    c.run_probes()
    bads: list[pl.Expr | bool] = []
    keep = _python_when(lst.when, rows(), c, bads) if lst.when is not None else pl.lit(True)
    frags: dict[str, Fragment] = {}
    for name, build in plans.items():
        b = build()
        frags[f"item.{name}"] = b.frag
        bads.append(b.bad)
    obj, _ = _obj(OrderItem, "item", frags)
    items = c.select({"item": obj, "keep": keep, "bad": _any(bads)})
    # each record's items joined as segments of the elements in record order (no grouping)
    rows_of_items = child["__row"].to_numpy()
    parents = rows_of_items
    item_text = items["item"].to_arrow()
    kept = items["keep"].to_numpy()
    if len(parents) > 1 and bool((parents[1:] < parents[:-1]).any()):
        order = np.argsort(parents, kind="stable")
        parents, kept, item_text = parents[order], kept[order], item_text.take(pa.array(order))
    counts = np.bincount(parents[kept], minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array(offsets), item_text.filter(pa.array(kept)).cast(pa.large_string())),
        pa.scalar(",", pa.large_string()),
    )
    text = pa.large_string()
    arrays = pc.binary_join_element_wise(pa.scalar("[", text), joined, pa.scalar("]", text), pa.scalar("", text))
    if present is not None:
        arrays = pc.if_else(present, arrays, pa.scalar(None, arrays.type))
    flagged = np.bincount(rows_of_items[items["bad"].to_numpy()], minlength=n) > 0
    return typing.cast(pl.Series, pl.from_arrow(arrays)).cast(pl.String), pl.Series(flagged, dtype=pl.Boolean)


__all__ = ["ArrowRecords", "Mapped", "Unsupported", "VectorMapping", "compile_vector", "json_text"]
