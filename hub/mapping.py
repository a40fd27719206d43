"""YAML mappings: a raw payload (dict from JSON, XML, a form or a SQL row) -> ``TouchpointEvent``.

A mapping file::

    name: pos_order
    kind: transaction                 # constant (or a field spec under fields.kind)
    timezone: Asia/Shanghai           # for naive datetimes; default Asia/Shanghai
    when: "status == 'PAID'"          # JMESPath; a falsy result skips the record (counted, not lost)
    lookups:
      category: {"01": 生鲜, "02": 乳制品}
    fields:
      occurred_at: {path: paid_at, type: datetime}
      channel: {const: pos}
      org.store: store_code           # a bare string is a JMESPath expression
      order.amount: {path: total, type: decimal}
      order.items:
        each: lines                   # one item per element; expressions below see the element
        fields:
          sku: sku
          category: {path: cat, lookup: category, default: 其他}
      customer.identities: {member_id: member_no, phone: mobile}
      feedback.text: {template: "{title}: {content}"}
      attributes.pos_terminal: terminal

Everything is compiled when the file loads: an unknown target field, a bad expression, an unknown
lookup or an impossible coercion is a ``MappingError`` naming ``file:line`` and the field.
At run time a bad value raises ``RecordError`` naming the field, and the record goes to quarantine.
"""

from __future__ import annotations

import builtins
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from numbers import Number
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import jmespath.exceptions
import jmespath.visitor
from pydantic import AwareDatetime, BaseModel, ValidationError

from hub.errors import MappingError, RecordError
from hub.model import EventKind, Identity, OrderItem, TouchpointEvent
from hub.yamlio import Lines, load_yaml, load_yaml_text

DEFAULT_TIMEZONE = "Asia/Shanghai"

# Fields the hub sets itself; a mapping may not write them.
_HUB_OWNED = {"id", "source", "external_id", "received_at", "raw_ref", "customer.customer_id"}
_TOP_KEYS = {"name", "description", "kind", "channel", "timezone", "when", "lookups", "fields"}
_SPEC_KEYS = {"path", "const", "template", "type", "tz", "format", "lookup", "default", "required", "root"}
_LIST_KEYS = {"each", "fields", "when"}
_TYPES = {"str", "int", "decimal", "float", "bool", "datetime", "date", "json"}
_TRUE = {"1", "true", "t", "yes", "y", "是", "on"}
_FALSE = {"0", "false", "f", "no", "n", "否", "off", ""}


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
Getter = Callable[[Any], Any]


# ---------------------------------------------------------------- expressions


def _fast_getter(parsed: dict[str, Any]) -> Getter | None:
    """A plain ``a.b.c`` path becomes chained dict lookups: the common case, 10x faster."""
    keys = _plain_keys(parsed)
    if keys is None:
        return None
    if len(keys) == 1:
        key = keys[0]

        def get1(data: Any) -> Any:
            # exact dict first: isinstance against the Mapping ABC is slow on the hot path
            if type(data) is dict or isinstance(data, Mapping):
                return data.get(key)
            return None

        return get1

    def get(data: Any) -> Any:
        for k in keys:
            if type(data) is not dict and not isinstance(data, Mapping):
                return None
            data = data.get(k)
        return data

    return get


def _plain_keys(parsed: dict[str, Any]) -> tuple[str, ...] | None:
    """The keys of a plain ``a.b.c`` path, or None for any other expression."""
    if parsed["type"] == "field":
        return (parsed["value"],)
    if parsed["type"] == "subexpression" and all(c["type"] == "field" for c in parsed["children"]):
        return tuple(c["value"] for c in parsed["children"])
    return None


def _parse(expression: str) -> dict[str, Any]:
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"bad expression {expression!r}: {exc}") from exc
    return typing.cast(dict[str, Any], compiled.parsed)


@cache
def compile_expression(expression: str) -> Getter:
    """Compile a JMESPath expression into a getter; raises ``ValueError`` with the parser's reason."""
    parsed = _parse(expression)
    fast = _fast_getter(parsed)
    return fast if fast is not None else _compile_node(parsed)


@cache
def plain_path(expression: str) -> tuple[str, ...] | None:
    """The keys of ``expression`` when it is a plain ``a.b.c`` path (what mappings inline), else None."""
    return _plain_keys(_parse(expression))


# JMESPath evaluation without jmespath's per-call costs. ``ParsedResult.search`` builds a
# ``TreeInterpreter`` (and its function table) on every call and dispatches every node through
# ``visit``; the common nodes of a filter (fields, literals, comparisons, && || !) become closures
# here that do exactly what ``jmespath.visitor.TreeInterpreter`` does (tests/core/
# test_mapping_speed_equiv.py runs many expressions and payloads through both). Every other node
# is evaluated by one shared interpreter: it keeps no state between calls.
_INTERPRETER = jmespath.visitor.TreeInterpreter()


def _jp_is_false(value: Any) -> bool:
    # jmespath's falsiness (TreeInterpreter._is_false): 0 is true, "" [] {} null false are false
    return value == "" or value == [] or value == {} or value is None or value is False


def _jp_is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, Number)


def _jp_equals(x: Any, y: Any) -> bool:
    # jmespath.visitor._equals: 0 and 1 are not equal to false and true
    if _jp_is_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _jp_is_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return x == y


_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "gt": operator.gt,
    "lte": operator.le,
    "gte": operator.ge,
}


def _compile_node(node: dict[str, Any]) -> Getter:
    """A closure evaluating the parsed JMESPath ``node`` as ``TreeInterpreter.visit`` does."""
    kind = node["type"]
    if kind == "field":
        key = node["value"]

        def get_field(value: Any) -> Any:
            try:
                return value.get(key)
            except AttributeError:
                return None

        return get_field
    if kind == "subexpression":
        keys = _plain_keys(node)
        if keys is not None:

            def fields(value: Any) -> Any:
                for k in keys:
                    try:
                        value = value.get(k)
                    except AttributeError:
                        return None  # None.get fails too: every later field is null
                return value

            return fields
        steps = [_compile_node(c) for c in node["children"]]

        def subexpression(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return subexpression
    if kind == "literal":
        literal = node["value"]

        def const(_: Any) -> Any:
            return literal

        return const
    if kind == "current":

        def current(value: Any) -> Any:
            return value

        return current
    if kind == "comparator" and node["value"] in ("eq", "ne"):
        return _compile_equality(node)
    if kind == "comparator" and node["value"] in _ORDERING:
        op = _ORDERING[node["value"]]
        left, right = (_compile_node(c) for c in node["children"])

        def ordering(value: Any) -> Any:
            a = left(value)
            b = right(value)
            # ordering is defined for numbers and strings only; anything else gives null
            if not ((_jp_is_number(a) or isinstance(a, str)) and (_jp_is_number(b) or isinstance(b, str))):
                return None
            return op(a, b)

        return ordering
    if kind == "and_expression":
        first, second = (_compile_node(c) for c in node["children"])

        def and_(value: Any) -> Any:
            matched = first(value)
            if _jp_is_false(matched):
                return matched
            return second(value)

        return and_
    if kind == "or_expression":
        first, second = (_compile_node(c) for c in node["children"])

        def or_(value: Any) -> Any:
            matched = first(value)
            if _jp_is_false(matched):
                matched = second(value)
            return matched

        return or_
    if kind == "not_expression":
        (inner,) = (_compile_node(c) for c in node["children"])

        def not_(value: Any) -> Any:
            result = inner(value)
            if _jp_is_number(result) and result == 0:
                return False  # !0 is false: 0 is not falsy in JMESPath
            return not result

        return not_
    visit: Callable[[Any, Any], Any] = _INTERPRETER.visit

    def interpreted(value: Any) -> Any:
        return visit(node, value)

    return interpreted


def _compile_equality(node: dict[str, Any]) -> Getter:
    negate = node["value"] == "ne"
    left_node, right_node = node["children"]
    # ``path == 'text'`` (or != ): with a string on one side, jmespath's equality is Python's ``==``
    if right_node["type"] == "literal" and isinstance(right_node["value"], str):
        keys = _plain_keys(left_node)
        if keys is not None:
            literal = right_node["value"]
            if len(keys) == 1:
                key = keys[0]

                def field_eq(value: Any) -> Any:
                    try:
                        x = value.get(key)
                    except AttributeError:
                        x = None
                    return x == literal

                def field_ne(value: Any) -> Any:
                    try:
                        x = value.get(key)
                    except AttributeError:
                        x = None
                    return not (x == literal)  # noqa: SIM201 - jmespath's != is `not ==`

                return field_ne if negate else field_eq

            path = _compile_node(left_node)

            def path_eq(value: Any) -> Any:
                return path(value) == literal

            def path_ne(value: Any) -> Any:
                return not (path(value) == literal)  # noqa: SIM201

            return path_ne if negate else path_eq
    left = _compile_node(left_node)
    right = _compile_node(right_node)
    if negate:

        def ne(value: Any) -> Any:
            return not _jp_equals(left(value), right(value))

        return ne

    def eq(value: Any) -> Any:
        return _jp_equals(left(value), right(value))

    return eq


_TEMPLATE_PART = re.compile(r"\{([^{}]+)\}")


def _compile_template(template: str) -> Callable[[Any], str]:
    parts: list[str | Getter] = []
    pos = 0
    for m in _TEMPLATE_PART.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()])
        parts.append(compile_expression(m.group(1).strip()))
        pos = m.end()
    if pos < len(template):
        parts.append(template[pos:])

    def render(data: Any) -> str:
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
            else:
                v = p(data)
                out.append("" if v is None else str(v))
        return "".join(out)

    return render


# ---------------------------------------------------------------- coercions


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def coerce(value: Any, kind: str, *, tz: ZoneInfo, fmt: str | None = None) -> Any:
    """Coerce a raw value to ``kind``; raises ``ValueError`` with a reason a person understands."""
    return coercer(kind, tz, fmt)(value)


def coercer(kind: str, tz: ZoneInfo, fmt: str | None = None) -> Callable[[Any], Any]:
    """The coercion function for ``kind`` (what ``coerce`` does, chosen once: mappings call it per value)."""
    if kind == "datetime":
        return _datetime_coercer(tz, fmt)
    if kind == "date":
        return _date_coercer(fmt)
    try:
        return _COERCERS[kind]
    except KeyError:
        raise ValueError(f"unknown type {kind!r}") from None  # compile() rules this out


def _to_str(value: Any) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, dict | list):
        raise ValueError(f"expected text, got {type(value).__name__}")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _to_decimal(value: Any) -> Decimal:
    if type(value) is str:
        text = value
    elif type(value) is int and value.bit_length() < 2000:
        # what Decimal(str(value)) gives, without the text; up to 600 digits, as str() refuses
        # ints longer than sys.get_int_max_str_digits() (4,300 by default, 640 at the least)
        return Decimal(value)
    elif isinstance(value, bool | dict | list):
        raise ValueError(f"expected a number, got {value!r}")
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return value
    else:
        text = str(value)
    try:
        d = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return d


def _to_float(value: Any) -> float:
    return float(_to_decimal(value))


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an integer") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(f"{value!r} is not an integer")
    return int(d)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def _as_is(value: Any) -> Any:
    return value


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "decimal": _to_decimal,
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "json": _as_is,
}


def _date_coercer(fmt: str | None) -> Callable[[Any], date]:
    def to_date(value: Any) -> date:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return datetime.strptime(str(value), fmt).date() if fmt else date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a date") from None

    return to_date


def _datetime_coercer(tz: ZoneInfo, fmt: str | None) -> Callable[[Any], datetime]:
    if fmt is not None:

        def to_datetime_in_format(value: Any) -> datetime:
            return _to_datetime(value, tz, fmt)

        return to_datetime_in_format

    fromisoformat = datetime.fromisoformat
    utcoffset = tz.utcoffset

    def to_datetime(value: Any) -> datetime:
        # the common cases first, exactly as _to_datetime treats them: ISO text, a driver's datetime
        cls = type(value)
        if cls is str:
            try:
                dt = fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not a date-time") from None
        elif cls is datetime:
            dt = value
        else:
            return _to_datetime(value, tz, None)
        if dt.tzinfo is None:
            offset = utcoffset(dt)
            if offset is not None:  # always, for a ZoneInfo
                # dt.replace(tzinfo=tz).astimezone(UTC) by hand: replace() alone costs 3x this
                u = dt - offset
                return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, UTC)
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(UTC)

    return to_datetime


def _to_datetime(value: Any, tz: ZoneInfo, fmt: str | None) -> datetime:
    if fmt in ("epoch", "epoch_ms") or (fmt is None and isinstance(value, int | float | Decimal)):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a timestamp")
        try:
            n = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a timestamp") from None
        if fmt == "epoch_ms":
            n = n / 1000
        try:
            return datetime.fromtimestamp(float(n), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{value!r} is out of range for a timestamp") from None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time())
    else:
        text = str(value).strip()
        try:
            dt = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a date-time" + (f" in format {fmt!r}" if fmt else "")) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


# ---------------------------------------------------------------- target fields


@dataclass(frozen=True)
class _Target:
    kind: str  # str int decimal float bool datetime enum list_str model_list any
    item_model: type[BaseModel] | None = None


def _classify(annotation: Any) -> _Target:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _classify(args[0])
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return _Target("model_list", inner)
        return _Target("list_str")
    if origin is dict:
        return _Target("any")
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return _Target("enum")
        if issubclass(annotation, bool):
            return _Target("bool")
        if issubclass(annotation, datetime):
            return _Target("datetime")
        if issubclass(annotation, Decimal):
            return _Target("decimal")
        if issubclass(annotation, int):
            return _Target("int")
        if issubclass(annotation, float):
            return _Target("float")
        if issubclass(annotation, str):
            return _Target("str")
    # aware datetimes are Annotated[datetime, ...]
    if typing.get_origin(annotation) is typing.Annotated:
        return _classify(typing.get_args(annotation)[0])
    if annotation is Any:
        return _Target("any")
    return _Target("any")


def _targets(model: type[BaseModel], prefix: str = "") -> dict[str, _Target]:
    out: dict[str, _Target] = {}
    for name, info in model.model_fields.items():
        dotted_name = prefix + name
        ann = info.annotation
        inner = [a for a in typing.get_args(ann) if a is not type(None)]
        sub = inner[0] if len(inner) == 1 and typing.get_origin(ann) in (typing.Union, types.UnionType) else ann
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out.update(_targets(sub, dotted_name + "."))
        else:
            # pydantic's AwareDatetime is a class of its own, not a datetime subclass
            if ann is AwareDatetime or ann is datetime:
                out[dotted_name] = _Target("datetime")
            else:
                out[dotted_name] = _classify(ann)
    return out


EVENT_TARGETS = {k: v for k, v in _targets(TouchpointEvent).items() if k not in _HUB_OWNED}
ITEM_TARGETS = _targets(OrderItem)

# coercion type -> target kinds it may feed
_COMPATIBLE: dict[str, set[str]] = {
    "str": {"str", "enum", "any", "list_str"},
    "int": {"int", "decimal", "float", "str", "any"},
    "decimal": {"decimal", "float", "int", "str", "any"},
    "float": {"decimal", "float", "any"},
    "bool": {"bool", "any"},
    "datetime": {"datetime", "any", "str"},
    "date": {"any", "str"},
    "json": {"any", "list_str", "model_list"},
}
_NATURAL = {
    "str": "str",
    "enum": "str",
    "int": "int",
    "decimal": "decimal",
    "float": "float",
    "bool": "bool",
    "datetime": "datetime",
    "list_str": "json",
    "any": "json",
}


# ---------------------------------------------------------------- compiled specs


_PASSTHROUGH: dict[str, builtins.type] = {"str": str, "decimal": Decimal, "int": int, "bool": bool}


@dataclass
class _FieldSpec:
    target: str
    getter: Getter
    type: str
    tz: ZoneInfo
    fmt: str | None
    lookup: dict[str, Any] | None
    lookup_name: str | None
    default: Any
    required: bool
    is_const: bool = False
    is_root: bool = False
    #: the keys when the expression is a plain ``a.b.c`` path (the generated code inlines it)
    keys: tuple[str, ...] | None = None
    #: a value of exactly this Python type needs no coercion (the hot path: SQL rows, JSON strings)
    passthrough: builtins.type | None = None
    coerce_fn: Callable[[Any], Any] = _as_is

    def __post_init__(self) -> None:
        self.passthrough = _PASSTHROUGH.get(self.type)
        self.coerce_fn = coercer(self.type, self.tz, self.fmt)

    def value(self, data: Any, root: Any) -> Any:
        """The field's value in ``data`` (or ``MISSING``): the reference the generated code follows."""
        raw = self.getter(root if self.is_root else data)
        if raw is None or (raw == "" and self.type not in ("str", "json")):
            if self.default is not MISSING:
                return self.default
            if self.required:
                raise RecordError("required value is missing", field=self.target)
            return MISSING
        if self.is_const:
            return raw
        if self.lookup is not None:
            key = str(raw)
            if key in self.lookup:
                raw = self.lookup[key]
            elif self.default is not MISSING:
                return self.default
            else:
                raise RecordError(_lookup_miss(raw, self.lookup_name), field=self.target)
        if type(raw) is self.passthrough:
            return raw
        if self.type == "json":
            return raw
        try:
            return self.coerce_fn(raw)
        except ValueError as exc:
            raise RecordError(str(exc), field=self.target) from None


@dataclass
class _ListSpec:
    target: str
    each: Getter
    when: Getter | None
    fields: list[_FieldSpec]
    each_keys: tuple[str, ...] | None = None


@dataclass
class _IdentitySpec:
    namespace: str
    spec: _FieldSpec


Builder = Callable[[Any, str, str, datetime | None], dict[str, Any] | None]


@dataclass
class CompiledMapping:
    """A compiled mapping. Use :meth:`apply`."""

    name: str
    file: str
    kind: _FieldSpec | None
    when: Getter | None
    fields: list[_FieldSpec] = field(default_factory=list)
    lists: list[_ListSpec] = field(default_factory=list)
    identities: list[_IdentitySpec] = field(default_factory=list)
    fixtures_path: Path | None = None
    #: the generated document builder (made by compile_mapping, else on first use) and its source
    _build: Builder | None = field(default=None, repr=False, compare=False)
    builder_source: str = field(default="", repr=False, compare=False)

    def apply(
        self,
        payload: Any,
        *,
        source: str,
        external_id: str,
        received_at: datetime | None = None,
    ) -> TouchpointEvent | None:
        """Map one payload. ``None`` when ``when`` filters it out; ``RecordError`` when it is bad."""
        doc = (self._build or self._make_builder())(payload, source, external_id, received_at)
        if doc is None:
            return None
        try:
            return TouchpointEvent.model_validate(doc)
        except ValidationError as exc:
            raise RecordError(_validation_reason(exc)) from None

    def build_doc(
        self, payload: Any, *, source: str, external_id: str, received_at: datetime | None = None
    ) -> dict[str, Any] | None:
        """What :meth:`apply` validates into the event: a dict, or ``None`` when ``when`` skips it."""
        return (self._build or self._make_builder())(payload, source, external_id, received_at)

    def _make_builder(self) -> Builder:
        self.builder_source, self._build = _generate(self)
        return self._build

    def interpret(
        self, payload: Any, source: str, external_id: str, received_at: datetime | None = None
    ) -> dict[str, Any] | None:
        """:meth:`build_doc` by walking the specs: the reference the generated builder must match.

        Used as the builder of mappings whose targets nest inside one another (``attributes``
        and ``attributes.x``), where the order of writes decides the result."""
        if self.when is not None and not self.when(payload):
            return None
        doc: dict[str, Any] = {"source": source, "external_id": external_id}
        if received_at is not None:
            doc["received_at"] = received_at
        if self.kind is not None:
            kind = self.kind.value(payload, payload)
            if kind is not MISSING:
                doc["kind"] = kind
        for spec in self.fields:
            v = spec.value(payload, payload)
            if v is not MISSING:
                _put(doc, spec.target, v)
        for lst in self.lists:
            elements = lst.each(payload)
            if elements is None:
                continue
            if isinstance(elements, Mapping):
                elements = [elements]
            if not isinstance(elements, list):
                raise RecordError(_not_a_list(elements), field=lst.target)
            items = []
            for i, element in enumerate(elements):
                if lst.when is not None and not lst.when(element):
                    continue
                item: dict[str, Any] = {}
                for spec in lst.fields:
                    try:
                        v = spec.value(element, payload)
                    except RecordError as exc:
                        raise RecordError(exc.reason, field=_item_field(lst.target, i, spec.target)) from None
                    if v is not MISSING:
                        item[spec.target] = v
                items.append(item)
            _put(doc, lst.target, items)
        if self.identities:
            ids = []
            for ident in self.identities:
                v = ident.spec.value(payload, payload)
                if v is not MISSING and v is not None and v != "":
                    ids.append({"namespace": ident.namespace, "value": v})
            if ids:
                doc.setdefault("customer", {}).setdefault("identities", []).extend(ids)
        return doc


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _put(doc: dict[str, Any], dotted_name: str, value: Any) -> None:
    parts = dotted_name.split(".")
    cur = doc
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def _lookup_miss(raw: Any, table: str | None) -> str:
    return f"{raw!r} is not in lookup table {table!r}"


def _item_field(target: str, index: int, sub: str) -> str:
    return f"{target}[{index}].{sub}"


def _not_a_list(value: Any) -> str:
    return f"expected a list, got {type(value).__name__}"


def _no_get(_: Any) -> None:
    return None


def _getter_of(data: Any) -> Callable[[Any], Any]:
    """``data.get`` for a mapping, else a get that finds nothing (as the path getters treat it)."""
    return data.get if isinstance(data, Mapping) else _no_get


# ---------------------------------------------------------------- code generation
#
# ``CompiledMapping.interpret`` walks the specs for every record: per field a method call, a few
# branches, a dotted name split, a coercion dispatched on its name. ``_generate`` writes the same
# steps out as one Python function per mapping, specialised at load: plain paths become chained
# ``dict.get`` calls (shared prefixes looked up once), each field's coercion function and
# passthrough type are bound names, nested documents are built through locals. Everything that
# comes from the mapping file (keys, literals, lookups, defaults, names) enters the function as a
# constant bound in its namespace (``c0``, ``c1``...), never as source text: the source only holds
# names the generator made up.


class _Scope:
    """Where plain paths are looked up: the payload, or a list element (its own loop body)."""

    def __init__(self, var: str, getter: str):
        self.var = var
        self.getters: dict[tuple[str, ...], str] = {}
        self.root_getter = getter


class _Codegen:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "RecordError": RecordError,
            "Mapping": Mapping,
            "NOT_FOUND": _NOT_FOUND,
            "getter_of": _getter_of,
            "lookup_miss": _lookup_miss,
            "item_field": _item_field,
            "not_a_list": _not_a_list,
        }
        self.lines: list[str] = []
        self.nodes: dict[tuple[str, ...], str] = {}
        self._strings: dict[str, str] = {}
        self._n = 0

    def bind(self, value: Any) -> str:
        """A name for ``value`` in the function's namespace."""
        if type(value) is str and value in self._strings:
            return self._strings[value]
        name = f"c{self._n}"
        self._n += 1
        self.ns[name] = value
        if type(value) is str:
            self._strings[value] = name
        return name

    def local(self, prefix: str) -> str:
        name = f"{prefix}{self._n}"
        self._n += 1
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # ------------------------------------------------------------ reading

    def getter(self, scope: _Scope, prefix: tuple[str, ...], depth: int) -> str:
        """The local holding ``get`` of the value at ``prefix`` (emitted where first needed)."""
        g = scope.getters.get(prefix)
        if g is not None:
            return g
        if not prefix:
            g = scope.root_getter
            self.emit(depth, f"{g} = {scope.var}.get if type({scope.var}) is dict else getter_of({scope.var})")
        else:
            parent = self.getter(scope, prefix[:-1], depth)
            value, g = self.local("o"), self.local("g")
            self.emit(depth, f"{value} = {parent}({self.bind(prefix[-1])})")
            self.emit(depth, f"{g} = {value}.get if type({value}) is dict else getter_of({value})")
        scope.getters[prefix] = g
        return g

    def raw(self, spec: _FieldSpec, scope: _Scope, root: _Scope, depth: int) -> str:
        """An expression of the field's raw value (emitting the path lookups it needs)."""
        if spec.is_root:
            if scope is root and spec.keys is not None:
                return f"{self.getter(root, spec.keys[:-1], depth)}({self.bind(spec.keys[-1])})"
            return f"{self.bind(spec.getter)}({root.var})"
        if spec.keys is not None:
            return f"{self.getter(scope, spec.keys[:-1], depth)}({self.bind(spec.keys[-1])})"
        return f"{self.bind(spec.getter)}({scope.var})"

    # ------------------------------------------------------------ writing

    def node(self, path: tuple[str, ...], depth: int) -> str:
        """The local of the nested dict at ``path`` in the document, created when first written."""
        if not path:
            return "doc"
        var = self.nodes.get(path)
        if var is None:
            var = self.nodes[path] = self.local("n")
        parent = self.node(path[:-1], depth)
        self.emit(depth, f"if {var} is None:")
        self.emit(depth + 1, f"{var} = {parent}[{self.bind(path[-1])}] = {{}}")
        return var

    def put_doc(self, target: str) -> Callable[[int, str], None]:
        parts = tuple(target.split("."))

        def put(depth: int, expr: str) -> None:
            node = self.node(parts[:-1], depth)
            self.emit(depth, f"{node}[{self.bind(parts[-1])}] = {expr}")

        return put

    def put_item(self, target: str) -> Callable[[int, str], None]:
        def put(depth: int, expr: str) -> None:
            self.emit(depth, f"item[{self.bind(target)}] = {expr}")

        return put

    def put_identity(self, namespace: str) -> Callable[[int, str], None]:
        def put(depth: int, expr: str) -> None:
            self.emit(depth, f'if {expr} is not None and {expr} != "":')
            self.emit(depth + 1, f'ids.append({{"namespace": {self.bind(namespace)}, "value": {expr}}})')

        return put

    # ------------------------------------------------------------ one field (``_FieldSpec.value``)

    def field(
        self,
        spec: _FieldSpec,
        scope: _Scope,
        root: _Scope,
        depth: int,
        put: Callable[[int, str], None],
        where: str,
    ) -> None:
        """Emit ``spec.value`` and ``put`` of its value; ``where`` is the expression of the field's name."""
        blank = 'v is None or v == ""' if spec.type not in ("str", "json") else "v is None"
        if spec.is_const:  # the same value every time: settle it now
            raw = spec.getter(None)
            if raw is None or (raw == "" and spec.type not in ("str", "json")):
                self.missing(spec, depth, put, where)
            else:
                put(depth, self.bind(raw))
            return
        self.emit(depth, f"v = {self.raw(spec, scope, root, depth)}")
        if spec.default is MISSING and not spec.required:
            self.emit(depth, "if v is not None:" if blank == "v is None" else f"if not ({blank}):")
        else:
            self.emit(depth, f"if {blank}:")
            self.missing(spec, depth + 1, put, where)
            self.emit(depth, "else:")
        depth += 1
        if spec.lookup is not None:
            self.emit(depth, f"k = {self.bind(spec.lookup)}.get(str(v), NOT_FOUND)")
            self.emit(depth, "if k is NOT_FOUND:")
            if spec.default is not MISSING:
                put(depth + 1, self.bind(spec.default))
            else:
                self.emit(depth + 1, f"raise RecordError(lookup_miss(v, {self.bind(spec.lookup_name)}), field={where})")
            self.emit(depth, "else:")
            depth += 1
            self.emit(depth, "v = k")
        if spec.type != "json":
            inner = depth
            if spec.passthrough is not None:
                self.emit(depth, f"if type(v) is not {self.bind(spec.passthrough)}:")
                inner += 1
            self.emit(inner, "try:")
            self.emit(inner + 1, f"v = {self.bind(spec.coerce_fn)}(v)")
            self.emit(inner, "except ValueError as exc:")
            self.emit(inner + 1, f"raise RecordError(str(exc), field={where}) from None")
        put(depth, "v")

    def missing(self, spec: _FieldSpec, depth: int, put: Callable[[int, str], None], where: str) -> None:
        if spec.default is not MISSING:
            put(depth, self.bind(spec.default))
        elif spec.required:
            self.emit(depth, f'raise RecordError("required value is missing", field={where})')
        else:
            self.emit(depth, "pass")

    # ------------------------------------------------------------ the mapping

    def mapping(self, m: CompiledMapping) -> str:
        root = _Scope("payload", "pg")
        if m.when is not None:
            self.emit(1, f"if not {self.bind(m.when)}(payload):")
            self.emit(2, "return None")
        self.emit(1, 'doc = {"source": source, "external_id": external_id}')
        self.emit(1, "if received_at is not None:")
        self.emit(2, 'doc["received_at"] = received_at')
        for spec in [m.kind, *m.fields] if m.kind is not None else m.fields:
            self.field(spec, root, root, 1, self.put_doc(spec.target), self.bind(spec.target))
        for lst in m.lists:
            if lst.each_keys is not None:
                each = f"{self.getter(root, lst.each_keys[:-1], 1)}({self.bind(lst.each_keys[-1])})"
            else:
                each = f"{self.bind(lst.each)}(payload)"
            target = self.bind(lst.target)
            self.emit(1, f"els = {each}")
            self.emit(1, "if els is not None:")
            self.emit(2, "if type(els) is not list:")
            self.emit(3, "if isinstance(els, Mapping):")
            self.emit(4, "els = [els]")
            self.emit(3, "elif not isinstance(els, list):")
            self.emit(4, f"raise RecordError(not_a_list(els), field={target})")
            self.emit(2, "items = []")
            self.emit(2, "for i, el in enumerate(els):")
            if lst.when is not None:
                self.emit(3, f"if not {self.bind(lst.when)}(el):")
                self.emit(4, "continue")
            self.emit(3, "item = {}")
            scope = _Scope("el", "eg")
            for spec in lst.fields:
                where = f"item_field({target}, i, {self.bind(spec.target)})"
                self.field(spec, scope, root, 3, self.put_item(spec.target), where)
            self.emit(3, "items.append(item)")
            self.put_doc(lst.target)(2, "items")
        if m.identities:
            self.emit(1, "ids = []")
            for ident in m.identities:
                spec = ident.spec
                self.field(spec, root, root, 1, self.put_identity(ident.namespace), self.bind(spec.target))
            self.emit(1, "if ids:")
            customer = self.node(("customer",), 2)
            self.emit(2, f'{customer}.setdefault("identities", []).extend(ids)')
        self.emit(1, "return doc")
        head = ["def build(payload, source, external_id, received_at):"]
        if self.nodes:
            head.append("    " + " = ".join(self.nodes.values()) + " = None")
        return "\n".join(head + self.lines) + "\n"


_NOT_FOUND: Any = _Missing()


def _nested_targets(m: CompiledMapping) -> bool:
    """True when a target is inside another (``attributes`` and ``attributes.x``)."""
    paths = {tuple(s.target.split(".")) for s in m.fields}
    paths |= {tuple(lst.target.split(".")) for lst in m.lists}
    if m.identities:
        paths.add(("customer", "identities"))
    return any(p[:i] in paths for p in paths for i in range(1, len(p)))


def _generate(m: CompiledMapping) -> tuple[str, Builder]:
    """The Python source of ``m``'s document builder and the function compiled from it."""
    if _nested_targets(m):
        return "", m.interpret
    gen = _Codegen()
    source = gen.mapping(m)
    code = compile(source, f"<mapping {m.name}>", "exec")
    exec(code, gen.ns)  # noqa: S102 - source made above from generated names only (see _Codegen)
    return source, typing.cast(Builder, gen.ns["build"])


# ---------------------------------------------------------------- compiler


def _compile_field(
    target: str,
    raw: Any,
    tgt: _Target,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
) -> _FieldSpec:
    def fail(msg: str, sub: tuple[str | int, ...] = ()) -> MappingError:
        return lines.error((*path, *sub), f"{target}: {msg}", MappingError)  # type: ignore[return-value]

    if isinstance(raw, str):
        raw = {"path": raw}
    elif not isinstance(raw, dict):
        if isinstance(raw, bool | int | float):
            raw = {"const": raw}
        else:
            raise fail("expected an expression string or a field spec mapping")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    sources = [k for k in ("path", "const", "template") if k in raw]
    if len(sources) != 1:
        raise fail("needs exactly one of path, const or template")
    natural = _NATURAL.get(tgt.kind, "json")
    kind = raw.get("type", natural)
    if kind not in _TYPES:
        raise fail(f"unknown type {kind!r}; allowed: {sorted(_TYPES)}", ("type",))
    if tgt.kind not in _COMPATIBLE[kind]:
        raise fail(f"cannot coerce type {kind!r} into a {tgt.kind} field", ("type",))
    fmt = raw.get("format")
    if fmt is not None and kind not in ("datetime", "date"):
        raise fail("format applies only to datetime and date", ("format",))
    zone = tz
    if "tz" in raw:
        try:
            zone = _zone(str(raw["tz"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(f"unknown time zone {raw['tz']!r}", ("tz",)) from None
    lookup = None
    lookup_name = raw.get("lookup")
    if lookup_name is not None:
        if isinstance(lookup_name, dict):
            lookup = {str(k): v for k, v in lookup_name.items()}
            lookup_name = "<inline>"
        elif lookup_name not in lookups:
            raise fail(f"unknown lookup table {lookup_name!r}; defined: {sorted(lookups)}", ("lookup",))
        else:
            lookup = lookups[lookup_name]
    is_const = "const" in raw
    getter: Getter
    keys = None
    if is_const:
        const = raw["const"]
        if kind != "json" and const is not None:
            try:
                const = coerce(const, kind, tz=zone, fmt=fmt)
            except ValueError as exc:
                raise fail(f"constant {raw['const']!r}: {exc}", ("const",)) from None
        if tgt.kind == "enum":
            _check_enum(target, const, fail)

        def const_getter(_: Any) -> Any:
            return const

        getter = const_getter

    elif "template" in raw:
        try:
            getter = _compile_template(str(raw["template"]))
        except ValueError as exc:
            raise fail(str(exc), ("template",)) from None
    else:
        try:
            getter = compile_expression(str(raw["path"]))
            keys = plain_path(str(raw["path"]))
        except ValueError as exc:
            raise fail(str(exc), ("path",)) from None
    if tgt.kind == "enum" and lookup is not None:
        for v in lookup.values():
            _check_enum(target, v, fail)
    default = raw.get("default", MISSING)
    if default is not MISSING and default is not None and kind not in ("json",):
        try:
            default = coerce(default, kind, tz=zone, fmt=fmt)
        except ValueError as exc:
            raise fail(f"default {raw['default']!r}: {exc}", ("default",)) from None
    spec = _FieldSpec(
        target=target,
        getter=getter,
        type=kind,
        tz=zone,
        fmt=fmt,
        lookup=lookup,
        lookup_name=lookup_name,
        default=default,
        required=bool(raw.get("required", False)),
        is_const=is_const,
        is_root=bool(raw.get("root", False)),
        keys=keys,
    )
    return spec


def _check_enum(target: str, value: Any, fail: Callable[[str], MappingError]) -> None:
    if target == "kind" and value is not None and value not in EventKind._value2member_map_:
        raise fail(f"{value!r} is not an event kind; allowed: {[k.value for k in EventKind]}")


def compile_mapping(data: Any, lines: Lines, name: str | None = None) -> CompiledMapping:
    """Compile parsed mapping YAML; every problem is a ``MappingError`` naming file:line:field."""
    if not isinstance(data, dict):
        raise lines.error((), "a mapping file must be a YAML mapping", MappingError)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise lines.error(
            (sorted(unknown)[0],),
            f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}",
            MappingError,
        )
    mname = str(data.get("name") or name or Path(lines.file).stem)
    try:
        tz = _zone(str(data.get("timezone", DEFAULT_TIMEZONE)))
    except (ZoneInfoNotFoundError, ValueError):
        raise lines.error(("timezone",), f"unknown time zone {data.get('timezone')!r}", MappingError) from None
    lookups_raw = data.get("lookups") or {}
    if not isinstance(lookups_raw, dict) or not all(isinstance(v, dict) for v in lookups_raw.values()):
        raise lines.error(("lookups",), "lookups must map a table name to a mapping of code -> value", MappingError)
    lookups = {k: {str(code): v for code, v in table.items()} for k, table in lookups_raw.items()}
    when = None
    if data.get("when") is not None:
        try:
            when = compile_expression(str(data["when"]))
        except ValueError as exc:
            raise lines.error(("when",), str(exc), MappingError) from None
    fields_raw = data.get("fields") or {}
    if not isinstance(fields_raw, dict):
        raise lines.error(("fields",), "fields must map target field -> spec", MappingError)
    compiled = CompiledMapping(name=mname, file=lines.file, kind=None, when=when)
    for top in ("kind", "channel"):
        if top in data:
            if top in fields_raw:
                raise lines.error((top,), f"{top} is given both at the top and under fields", MappingError)
            fields_raw = {top: {"const": data[top]}, **fields_raw}
            lines.lines[("fields", top)] = lines.line((top,)) or 0
    for target, raw in fields_raw.items():
        path: tuple[str | int, ...] = ("fields", target)
        if target in _HUB_OWNED:
            raise lines.error(path, f"{target}: is set by the hub, not by a mapping", MappingError)
        if target == "customer.identities":
            compiled.identities.extend(_compile_identities(raw, lines, path, lookups, tz))
            continue
        tgt = EVENT_TARGETS.get(target)
        if tgt is None and target.startswith("attributes.") and len(target) > len("attributes."):
            tgt = _Target("any")
        if tgt is None:
            raise lines.error(path, f"{target}: unknown target field; see `cxhub schema`", MappingError)
        if tgt.kind == "model_list":
            compiled.lists.append(_compile_list(target, raw, tgt, lines, path, lookups, tz))
            continue
        spec = _compile_field(target, raw, tgt, lines, path, lookups, tz)
        if target == "kind":
            compiled.kind = spec
        else:
            compiled.fields.append(spec)
    if compiled.kind is None:
        raise lines.error(("fields",), "kind: required (top-level `kind:` or fields.kind)", MappingError)
    if not any(s.target == "occurred_at" for s in compiled.fields):
        raise lines.error(("fields",), "occurred_at: required", MappingError)
    compiled._make_builder()
    return compiled


def _compile_identities(
    raw: Any, lines: Lines, path: tuple[str | int, ...], lookups: dict[str, dict[str, Any]], tz: ZoneInfo
) -> list[_IdentitySpec]:
    if not isinstance(raw, dict):
        raise lines.error(path, "customer.identities: expected a mapping of namespace -> expression", MappingError)
    out = []
    for ns, spec in raw.items():
        out.append(
            _IdentitySpec(
                str(ns),
                _compile_field(f"customer.identities.{ns}", spec, _Target("str"), lines, (*path, ns), lookups, tz),
            )
        )
    return out


def _compile_list(
    target: str,
    raw: Any,
    tgt: _Target,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
) -> _ListSpec:
    if not isinstance(raw, dict) or "each" not in raw or "fields" not in raw:
        raise lines.error(path, f"{target}: a list field needs `each:` (expression) and `fields:`", MappingError)
    unknown = set(raw) - _LIST_KEYS
    if unknown:
        raise lines.error(path, f"{target}: unknown key(s) {sorted(unknown)}", MappingError)
    try:
        each = compile_expression(str(raw["each"]))
        when = compile_expression(str(raw["when"])) if raw.get("when") else None
    except ValueError as exc:
        raise lines.error((*path, "each"), f"{target}: {exc}", MappingError) from None
    assert tgt.item_model is not None
    item_targets = _targets(tgt.item_model)
    specs = []
    if not isinstance(raw["fields"], dict):
        raise lines.error((*path, "fields"), f"{target}: fields must be a mapping", MappingError)
    for sub, sub_raw in raw["fields"].items():
        st = item_targets.get(sub)
        if st is None:
            raise lines.error(
                (*path, "fields", sub),
                f"{target}.{sub}: unknown field; allowed: {sorted(item_targets)}",
                MappingError,
            )
        specs.append(_compile_field(sub, sub_raw, st, lines, (*path, "fields", sub), lookups, tz))
    return _ListSpec(target=target, each=each, when=when, fields=specs, each_keys=plain_path(str(raw["each"])))


# ---------------------------------------------------------------- loading

PRESET_DIR = Path(__file__).resolve().parent.parent / "mappings"


def load_mapping_file(path: str | Path) -> CompiledMapping:
    """Load and compile one mapping file."""
    data, lines = load_yaml(path)
    m = compile_mapping(data, lines)
    fx = fixtures_path_for(Path(path))
    m.fixtures_path = fx if fx.exists() else None
    return m


def load_mapping_text(text: str, file: str = "<string>") -> CompiledMapping:
    """Compile a mapping from YAML text (tests, inline config)."""
    data, lines = load_yaml_text(text, file)
    return compile_mapping(data, lines)


def fixtures_path_for(mapping_path: Path) -> Path:
    """``pos_order.yaml`` -> ``pos_order.fixtures.yaml`` beside it."""
    return mapping_path.with_name(mapping_path.stem + ".fixtures.yaml")


def preset_path(name: str) -> Path | None:
    """Path of the preset mapping ``name`` in ``mappings/``, or None."""
    p = PRESET_DIR / f"{name}.yaml"
    return p if p.is_file() else None


def resolve_mapping_ref(ref: str, base_dir: Path) -> Path:
    """A mapping reference is a preset name (``pos_order``) or a path relative to the config file."""
    if "/" not in ref and not ref.endswith((".yaml", ".yml")):
        p = preset_path(ref)
        if p is None:
            presets = sorted(f.stem for f in PRESET_DIR.glob("*.yaml") if not f.stem.endswith(".fixtures"))
            raise FileNotFoundError(f"no preset mapping {ref!r}; presets: {presets}")
        return p
    p = (base_dir / ref).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"mapping file {ref!r} not found (looked at {p})")
    return p


def list_presets() -> list[Path]:
    """Every preset mapping file in ``mappings/``."""
    return sorted(p for p in PRESET_DIR.glob("*.yaml") if not p.name.endswith(".fixtures.yaml"))


def event_targets() -> dict[str, str]:
    """Target field -> kind, for docs and error messages."""
    return {k: v.kind for k, v in EVENT_TARGETS.items()}


__all__ = [
    "MISSING",
    "CompiledMapping",
    "Identity",
    "coerce",
    "compile_expression",
    "compile_mapping",
    "list_presets",
    "load_mapping_file",
    "load_mapping_text",
    "resolve_mapping_ref",
]
