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
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import jmespath.exceptions
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
    if parsed["type"] == "field":
        keys = [parsed["value"]]
    elif parsed["type"] == "subexpression" and all(c["type"] == "field" for c in parsed["children"]):
        keys = [c["value"] for c in parsed["children"]]
    else:
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


@cache
def compile_expression(expression: str) -> Getter:
    """Compile a JMESPath expression into a getter; raises ``ValueError`` with the parser's reason."""
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"bad expression {expression!r}: {exc}") from exc
    fast = _fast_getter(typing.cast(dict[str, Any], compiled.parsed))
    return fast if fast is not None else compiled.search


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
    if kind == "str":
        if isinstance(value, dict | list):
            raise ValueError(f"expected text, got {type(value).__name__}")
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, Decimal):
            return format(value, "f")
        return str(value)
    if kind in ("decimal", "float"):
        if isinstance(value, bool | dict | list):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            d = value if isinstance(value, Decimal) else Decimal(str(value).strip().replace(",", ""))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
        if not d.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return float(d) if kind == "float" else d
    if kind == "int":
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
    if kind == "bool":
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a yes/no value")
    if kind == "datetime":
        return _to_datetime(value, tz, fmt)
    if kind == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return datetime.strptime(str(value), fmt).date() if fmt else date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a date") from None
    if kind == "json":
        return value
    raise ValueError(f"unknown type {kind!r}")  # compile() rules this out


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
    #: a value of exactly this Python type needs no coercion (the hot path: SQL rows, JSON strings)
    passthrough: builtins.type | None = None

    def __post_init__(self) -> None:
        self.passthrough = _PASSTHROUGH.get(self.type)

    def value(self, data: Any, root: Any) -> Any:
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
                raise RecordError(f"{raw!r} is not in lookup table {self.lookup_name!r}", field=self.target)
        if type(raw) is self.passthrough:
            return raw
        if self.type == "json":
            return raw
        try:
            return coerce(raw, self.type, tz=self.tz, fmt=self.fmt)
        except ValueError as exc:
            raise RecordError(str(exc), field=self.target) from None


@dataclass
class _ListSpec:
    target: str
    each: Getter
    when: Getter | None
    fields: list[_FieldSpec]
    is_root: bool = False


@dataclass
class _IdentitySpec:
    namespace: str
    spec: _FieldSpec


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

    def apply(
        self,
        payload: Any,
        *,
        source: str,
        external_id: str,
        received_at: datetime | None = None,
    ) -> TouchpointEvent | None:
        """Map one payload. ``None`` when ``when`` filters it out; ``RecordError`` when it is bad."""
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
                raise RecordError(f"expected a list, got {type(elements).__name__}", field=lst.target)
            items = []
            for i, element in enumerate(elements):
                if lst.when is not None and not lst.when(element):
                    continue
                item: dict[str, Any] = {}
                for spec in lst.fields:
                    try:
                        v = spec.value(element, payload)
                    except RecordError as exc:
                        raise RecordError(exc.reason, field=f"{lst.target}[{i}].{spec.target}") from None
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
        try:
            return TouchpointEvent.model_validate(doc)
        except ValidationError as exc:
            raise RecordError(_validation_reason(exc)) from None


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
    return _ListSpec(target=target, each=each, when=when, fields=specs)


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
