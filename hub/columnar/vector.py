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

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

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
from hub.sdk.expressions import plain_keys

#: PostgreSQL's numeric text that ``str(Decimal(text))`` gives back unchanged
_CANONICAL_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
#: what JSON text needs escaped that the vectorised escaping below does not cover
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
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
    for row in rows:
        for c in cols:
            if row[c] is not None:
                row[c] = _decimal(row[c])
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


# ---------------------------------------------------------------- one field


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

    def evaluate(
        self,
        table: pa.Table,
        numeric: frozenset[str],
        rows: Callable[[], list[dict[str, Any]]],
        opaque: frozenset[str] | None = None,
    ) -> Frag:
        """``opaque``: the keys the records hold outside the columns (None: not known)."""
        n = table.num_rows
        spec = self.spec
        if spec.is_const or (self.column is not None and opaque is not None and self._absent(table, opaque)):
            # a constant, or a key no record holds (the source has no such column): the row
            # path's own value of a record without it, once
            frag, bad = self._one({})
            return Frag(const(frag, n, pl.String), const(bad, n))
        if self.column is None or self.column not in table.column_names:
            # templates, expressions, paths into values that are not columns (a list, a key no
            # record has): the row path's own value, per record
            return self._per_record(rows())
        arr = (
            table[self.column].combine_chunks()
            if isinstance(table[self.column], pa.ChunkedArray)
            else table[self.column]
        )
        fast = None if spec.lookup is not None else self._fast(arr, self.column in numeric)
        if fast is not None:
            return fast
        return self._distinct(arr, self.column in numeric)

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
        """Each distinct value through the row path's code once, spread back over the rows."""
        enc = pc.dictionary_encode(arr, null_encoding="encode")
        keys = self.spec.keys or ("",)
        frags: list[str | None] = []
        bads: list[bool] = []
        for raw in enc.dictionary.to_pylist():
            if numeric and raw is not None:
                raw = _decimal(raw)
            data: Any = raw
            for k in reversed(keys):
                data = {k: data}
            frag, bad = self._one(data)
            frags.append(frag)
            bads.append(bad)
        idx = enc.indices
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

    def _missing(self, is_null: pl.Series) -> tuple[pl.Series, pl.Series]:
        """Fragments and flags where the value is missing (null / blank): default, required, omitted."""
        spec = self.spec
        if spec.default is not MISSING:
            frag, bad = self.default_frag, self.default_bad
        elif spec.required:
            frag, bad = None, True
        else:
            frag, bad = None, False
        return const(frag, len(is_null), pl.String), is_null & bad

    def _fast(self, arr: pa.Array, numeric: bool) -> Frag | None:
        """The vectorised forms, each only where it gives what the row path gives; None: none fits."""
        kind = self.spec.type
        target = _target_kind(self.adapter)
        t = arr.type
        s: pl.Series = pl.from_arrow(arr)  # type: ignore[assignment]
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if numeric and kind in ("decimal", "str", "json") and target in ("decimal", "str", "any"):
                # PostgreSQL numeric text: Decimal(text) prints as the text when canonical
                ok = s.str.contains(_CANONICAL_DECIMAL).fill_null(True)
                if not ok.all():
                    return None
                missing = s.is_null()
                frag = pl.concat_str([pl.lit('"'), pl.lit(s), pl.lit('"')], ignore_nulls=False)
                frag_s = pl.select(frag).to_series()
                return self._combine(frag_s, missing)
            if numeric:
                return None
            if kind in ("str", "json") and target in ("str", "any"):
                return self._combine(json_text(s), s.is_null())
            return None
        if pa.types.is_integer(t) and not numeric:
            if kind in ("int", "json") and target in ("int", "any", "decimal_int"):
                frag_s = s.cast(pl.String)
                return self._combine(frag_s, s.is_null())
            if kind in ("str",) and target in ("str", "any"):
                return self._combine(
                    pl.select(pl.concat_str([pl.lit('"'), pl.lit(s.cast(pl.String)), pl.lit('"')])).to_series(),
                    s.is_null(),
                )
            if kind in ("decimal", "int") and target == "decimal":
                return self._combine(
                    pl.select(pl.concat_str([pl.lit('"'), pl.lit(s.cast(pl.String)), pl.lit('"')])).to_series(),
                    s.is_null(),
                )
            return None
        if pa.types.is_timestamp(t) and kind == "datetime" and target == "datetime" and self.spec.fmt is None:
            if t.tz is None:
                zone = self.spec.tz.key
                utc = s.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null").dt.convert_time_zone(
                    "UTC"
                )
                gap = utc.is_null() & s.is_not_null()
            else:
                utc = s.dt.convert_time_zone("UTC")
                gap = const(False, len(s))
            frag_s = iso_utc(utc)
            frag_s = pl.select(pl.concat_str([pl.lit('"'), pl.lit(frag_s), pl.lit('"')])).to_series()
            out = self._combine(frag_s, s.is_null())
            return Frag(out.frag, out.bad | gap)
        if pa.types.is_timestamp(t) and kind == "json" and target == "any" and t.tz is None:
            frag_s = iso_naive(s)
            return self._combine(
                pl.select(pl.concat_str([pl.lit('"'), pl.lit(frag_s), pl.lit('"')])).to_series(), s.is_null()
            )
        if pa.types.is_boolean(t) and kind in ("bool", "json") and target in ("bool", "any"):
            frag_s = pl.select(pl.when(pl.lit(s)).then(pl.lit("true")).otherwise(pl.lit("false"))).to_series()
            return self._combine(frag_s, s.is_null())
        return None

    def _combine(self, frag: pl.Series, missing: pl.Series) -> Frag:
        if not missing.any():
            return Frag(frag, const(False, len(frag)))
        dfrag, dbad = self._missing(missing)
        out = pl.select(pl.when(pl.lit(missing)).then(pl.lit(dfrag)).otherwise(pl.lit(frag))).to_series()
        return Frag(out, dbad)


def iso_utc(utc: pl.Series) -> pl.Series:
    """``2026-01-01T00:00:01Z`` / ``...01.500000Z``: how the event's JSON writes an aware time."""
    whole = utc.dt.to_string("%Y-%m-%dT%H:%M:%SZ")
    frac = utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")
    return pl.select(pl.when(pl.lit(utc).dt.microsecond() == 0).then(pl.lit(whole)).otherwise(pl.lit(frac))).to_series()


def iso_naive(ts: pl.Series) -> pl.Series:
    whole = ts.dt.to_string("%Y-%m-%dT%H:%M:%S")
    frac = ts.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
    return pl.select(pl.when(pl.lit(ts).dt.microsecond() == 0).then(pl.lit(whole)).otherwise(pl.lit(frac))).to_series()


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


_TOP_ORDER = ("kind", "channel", "occurred_at")


def _obj(model: type[BaseModel], prefix: str, frags: dict[str, pl.Series], n: int) -> tuple[pl.Expr, pl.Expr]:
    """The JSON object of a submodel (every field, defaults where missing) and whether any of its
    fields was written (an optional submodel is null otherwise)."""
    parts: list[pl.Expr] = [pl.lit("{")]
    written: pl.Expr = pl.lit(False)
    first = True
    for name in model.model_fields:
        key = f"{prefix}.{name}"
        default = _default_json(model, name)
        if key in frags:
            value = pl.lit(frags[key])
            written = written | value.is_not_null()
            value = value.fill_null(pl.lit(default if default is not None else "null"))
        else:
            value = pl.lit(default if default is not None else "null")
        parts.append(pl.lit(("" if first else ",") + orjson.dumps(name).decode() + ":"))
        parts.append(value)
        first = False
    parts.append(pl.lit("}"))
    return pl.concat_str(parts), written


def _map(vm: VectorMapping, records: ArrowRecords) -> Mapped:
    table = records.table
    n = table.num_rows
    numeric = records.numeric_of()
    rows = records.all_payloads
    opaque = records.opaque_of()
    bad = const(False, n)
    frags: dict[str, pl.Series] = {}
    for target, leaf in vm.leaves.items():
        f = leaf.evaluate(table, numeric, rows, opaque)
        frags[target] = f.frag
        bad = bad | f.bad
    filtered = const(False, n)
    keep_mask = None
    if vm.mapping.when_text is not None:
        keep_mask = vector_when(vm.mapping.when_text, table, opaque, numeric)
    if keep_mask is not None:
        filtered = ~keep_mask
    elif vm.when is not None:
        payloads = records.all_payloads()
        keep = []
        odd = []
        for p in payloads:
            try:
                keep.append(bool(vm.when(p)))
                odd.append(False)
            except Exception:  # the row path raises it: let it
                keep.append(True)
                odd.append(True)
        filtered = ~pl.Series(keep, dtype=pl.Boolean)
        bad = bad | pl.Series(odd, dtype=pl.Boolean)
    # nested lists: one JSON array per record
    for lst in vm.lists:
        arr, lbad = _items(lst, records, n)
        frags[lst.target] = arr
        bad = bad | lbad
    # identities: the plain values; blank ones are no identity
    idents: list[tuple[str, pl.Series, pl.Series | None]] = []
    for il in vm.identities:
        plain, ibad = _identity_values(il.leaf, table, numeric, rows, opaque)
        scopes = None
        if il.scope is not None:  # a value without its app (or too long a one): the row path's reason
            scopes, sbad = _identity_values(il.scope, table, numeric, rows, opaque)
            unscoped = plain.is_not_null() & (scopes.is_null() | (scopes.str.len_chars() > 128).fill_null(False))
            ibad = ibad | sbad | unscoped
        idents.append((il.namespace, plain, scopes))
        bad = bad | ibad
    # the event's JSON, in the model's field order, split around the customer id
    kind = frags["kind"]
    bad = bad | kind.is_null() | frags["occurred_at"].is_null()
    org, _ = _obj(Org, "org", frags, n)
    order_parts = None
    if any(k.startswith("order.") for k in frags):
        order_obj, written = _obj(Order, "order", frags, n)
        order_parts = pl.when(written).then(order_obj).otherwise(pl.lit("null"))
    attrs = [(k.split(".", 1)[1], v) for k, v in frags.items() if k.startswith("attributes.")]
    for _, v in attrs:  # a phone number inside a text attribute: the row path masks it and seals it
        bad = bad | v.str.contains(PHONE_PATTERN).fill_null(False)
    attr_expr: pl.Expr
    if attrs:
        pieces = [pl.concat_str([pl.lit(orjson.dumps(name).decode() + ":"), pl.lit(v)]) for name, v in attrs]
        attr_expr = pl.concat_str([pl.lit("{"), pl.concat_str(pieces, separator=",", ignore_nulls=True), pl.lit("}")])
    else:
        attr_expr = pl.lit("{}")
    top = {}
    for name in ("channel",):
        d = _default_json(TouchpointEvent, name)
        top[name] = pl.lit(frags[name]).fill_null(pl.lit(d)) if name in frags else pl.lit(d)
    cust_rest = []
    for name in ("name", "member_level"):
        d = _default_json(Customer, name) or "null"
        key = f"customer.{name}"
        cust_rest.append(pl.lit(frags[key]).fill_null(pl.lit(d)) if key in frags else pl.lit(d))
    head_parts: list[pl.Expr] = [
        pl.lit('"kind":'),
        pl.lit(kind),
        pl.lit(',"channel":'),
        top["channel"],
        pl.lit(',"occurred_at":'),
        pl.lit(frags["occurred_at"]),
    ]
    tail_parts: list[pl.Expr] = [
        pl.lit(',"name":'),
        cust_rest[0],
        pl.lit(',"member_level":'),
        cust_rest[1],
        pl.lit('},"org":'),
        org,
        pl.lit(',"order":'),
        order_parts if order_parts is not None else pl.lit("null"),
        pl.lit(',"feedback":null,"attributes":'),
        attr_expr,
        pl.lit(',"raw_ref":null}'),
    ]
    out = pl.select(
        head=pl.concat_str(head_parts),
        tail=pl.concat_str(tail_parts),
    )
    status = pl.select(
        pl.when(pl.lit(filtered) & ~pl.lit(bad))
        .then(pl.lit("filtered"))
        .when(pl.lit(bad))
        .then(pl.lit("row"))
        .otherwise(pl.lit("ok"))
    ).to_series()
    kinds = kind.str.strip_chars('"')
    channel = frags.get("channel")
    columns = pl.DataFrame(
        {
            "kind": kinds,
            "channel": _unjson(channel, n),
            "occurred_at": _occurred(frags["occurred_at"]),
            "store": _unjson(frags.get("org.store"), n),
        }
    )
    return Mapped(status, out["head"], out["tail"], columns, idents)


def vector_when(
    expression: str, table: pa.Table, opaque: frozenset[str] | None, numeric: frozenset[str] = frozenset()
) -> pl.Series | None:
    """``expression`` (a mapping's ``when``) for every record at once: which records it keeps, as
    the row path's JMESPath would decide them; None when the expression has a form this does not
    evaluate (then it runs per record). Evaluated: comparisons of a plain path with a text, number
    or boolean literal (``status != 'VOID'``, ``total > `0```), and ``&&``, ``||``, ``!`` of them.
    ``opaque`` as for :meth:`Leaf.evaluate`: with None, a path that is no column is not evaluated;
    ``numeric`` columns (decimals as text) are not evaluated."""
    import jmespath

    try:
        node = typing.cast(dict[str, Any], jmespath.compile(expression).parsed)
    except Exception:  # compiled once already by the mapping: not expected
        return None
    try:
        expr = _when_node(node, table, opaque, numeric)
    except _NotVector:
        return None
    return pl.select(expr.fill_null(False)).to_series() if table.num_rows else pl.Series([], dtype=pl.Boolean)


class _NotVector(Exception):
    pass


_ORDER_OPS = {"lt": "__lt__", "gt": "__gt__", "lte": "__le__", "gte": "__ge__"}


def _when_node(
    node: dict[str, Any], table: pa.Table, opaque: frozenset[str] | None, numeric: frozenset[str]
) -> pl.Expr:
    """A boolean expression (null: false) of the JMESPath ``node`` over ``table``'s columns."""
    kind = node["type"]
    if kind in ("and_expression", "or_expression"):
        a, b = (_when_node(c, table, opaque, numeric).fill_null(False) for c in node["children"])
        return (a & b) if kind == "and_expression" else (a | b)
    if kind == "not_expression":
        (inner,) = node["children"]
        return ~_when_node(inner, table, opaque, numeric).fill_null(False)
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
    n = table.num_rows
    if name in numeric:
        raise _NotVector  # Decimals on the row path
    if name in table.column_names:
        values: pl.Series = pl.from_arrow(table[name])  # type: ignore[assignment]
    elif opaque is not None and path_absent(keys, table.column_names, opaque):
        values = const(None, n, pl.String)  # absent, or an object / list: no scalar
    else:
        raise _NotVector
    dtype = values.dtype
    is_text = dtype == pl.String
    is_bool = dtype == pl.Boolean
    is_number = dtype.is_numeric()
    lit_text = isinstance(literal, str)
    lit_bool = isinstance(literal, bool)
    lit_number = isinstance(literal, int | float) and not lit_bool
    if not (lit_text or lit_bool or lit_number):
        raise _NotVector  # null, lists, objects
    if dtype.is_float() and bool(values.is_nan().any()):
        raise _NotVector  # NaN orders above every number in Polars, and compares false in Python
    col = pl.lit(values)
    if op in ("eq", "ne"):
        # JMESPath equality: the same type and value (1 is not true, "1" is not 1); null equals no literal
        same = (is_text and lit_text) or (is_bool and lit_bool) or (is_number and lit_number)
        eq = (col == pl.lit(literal)).fill_null(False) if same else pl.repeat(False, n)
        return ~eq if op == "ne" else eq
    if op in _ORDER_OPS:
        # ordering of two numbers or two texts; null when a side is neither (a text against a
        # number raises per record: those are the row path's)
        if (is_text and lit_text) or (is_number and lit_number):
            return typing.cast(pl.Expr, getattr(col, _ORDER_OPS[op])(pl.lit(literal)))
        if values.null_count() == n or is_bool:
            return pl.repeat(None, n, dtype=pl.Boolean)
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


def _unjson(frag: pl.Series | None, n: int) -> pl.Series:
    """The text of JSON string fragments (the typed columns beside the document)."""
    if frag is None:
        return const(None, n, pl.String)
    return _decode_json_strings(frag)


def _decode_json_strings(frag: pl.Series) -> pl.Series:
    plain = frag.str.strip_prefix('"').str.strip_suffix('"')
    tricky = frag.str.contains("\\", literal=True).fill_null(False) | (frag == "null").fill_null(False)
    if tricky.any():
        idx = tricky.arg_true().to_list()
        fixed = [orjson.loads(v) if v is not None else None for v in frag.gather(idx).to_list()]
        plain = plain.scatter(idx, [None if v is None else str(v) for v in fixed])
    return plain


def _occurred(frag: pl.Series) -> pl.Series:
    text = frag.str.strip_chars('"')
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False)


def _identity_values(
    leaf: Leaf,
    table: pa.Table,
    numeric: frozenset[str],
    rows: Callable[[], list[dict[str, Any]]],
    opaque: frozenset[str] | None,
) -> tuple[pl.Series, pl.Series]:
    """The plain identity value of each record (null: none) and the rows the row path must decide."""
    f = leaf.evaluate(table, numeric, rows, opaque)
    value = _decode_json_strings(f.frag)
    blank = value.is_null() | (value == "").fill_null(True)
    value = pl.select(pl.when(pl.lit(blank)).then(None).otherwise(pl.lit(value))).to_series()
    too_long = (value.str.len_chars() > 512).fill_null(False)
    return value, f.bad | too_long


def _items(lst: ListLeaves, records: ArrowRecords, n: int) -> tuple[pl.Series, pl.Series]:
    """Each record's JSON array of items, and the records whose items the row path must decide."""
    child = records.children.get(lst.field)
    present = records.present.get(lst.field)
    if child is None:
        return const(None, n, pl.String), const(False, n)
    parent = typing.cast(pl.Series, pl.from_arrow(child["__row"].combine_chunks()))
    body = child.drop_columns(["__row"])
    m = body.num_rows
    child_numeric = records.numeric_of(lst.field)
    if records.payloads is not None or records.loader is not None:  # the elements as the source read them

        def rows() -> list[dict[str, Any]]:
            return [el for p in records.all_payloads() if isinstance(p.get(lst.field), list) for el in p[lst.field]]

    else:
        rows = _rows_of(body, child_numeric)
    bad = const(False, m)
    keep = const(True, m)
    if lst.when is not None:
        flags = []
        odd = []
        for r in rows():
            try:
                flags.append(bool(lst.when(r)))
                odd.append(False)
            except Exception:
                flags.append(True)
                odd.append(True)
        keep = pl.Series(flags, dtype=pl.Boolean)
        bad = bad | pl.Series(odd, dtype=pl.Boolean)
    frags: dict[str, pl.Series] = {}
    for name, leaf in lst.leaves.items():
        f = leaf.evaluate(body, child_numeric, rows, records.opaque_of(lst.field))
        frags[f"item.{name}"] = f.frag
        bad = bad | f.bad
    obj, _ = _obj(OrderItem, "item", frags, m)
    items = pl.select(parent=pl.lit(parent), item=obj, keep=pl.lit(keep), bad=pl.lit(bad))
    grouped = items.filter(pl.col("keep")).group_by("parent", maintain_order=True).agg(pl.col("item").str.join(","))
    bad_rows = items.filter(pl.col("bad")).get_column("parent").unique()
    idx = pl.DataFrame({"parent": pl.arange(0, n, eager=True).cast(parent.dtype)})
    joined = idx.join(grouped, on="parent", how="left", maintain_order="left")
    arrays = pl.select(
        pl.concat_str([pl.lit("["), pl.lit(joined["item"]).fill_null(pl.lit("")), pl.lit("]")])
    ).to_series()
    if present is not None:
        has = pl.from_arrow(present)
        arrays = pl.select(pl.when(pl.lit(has)).then(pl.lit(arrays)).otherwise(None)).to_series()
    flagged = idx["parent"].is_in(bad_rows.implode()) if len(bad_rows) else const(False, n)
    return arrays, flagged


__all__ = ["ArrowRecords", "Mapped", "Unsupported", "VectorMapping", "compile_vector", "json_text"]
