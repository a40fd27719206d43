"""Compiling a mapping: YAML saying how a raw payload (JSON, XML, a form, a SQL row) becomes an event.

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
      customer.identities:
        member_id: member_no
        phone: mobile
        openid: {path: openid, scope: appid}   # an openid is per app: scope says which app
      feedback.text: {template: "{title}: {content}"}
      attributes.pos_terminal: terminal

Everything is compiled when the file loads: an unknown target field, a bad expression, an unknown
lookup, an undeclared identity namespace or an impossible coercion is a ``MappingError`` naming
``file:line`` and the field; a mapping with several raises them all (``MappingErrors``), each
unknown name with the closest known one.
At run time a bad value raises ``RecordError`` naming the field, and the record goes to quarantine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import ConfigError, ConfigErrors, MappingError, MappingErrors, did_you_mean
from hub.mapping.apply import CompiledMapping
from hub.mapping.coerce import coerce, time_zone
from hub.mapping.specs import MISSING, FieldSpec, IdentitySpec, ListSpec
from hub.mapping.targets import COMPATIBLE, EVENT_TARGETS, HUB_OWNED, NATURAL, Target, model_targets
from hub.model import EventKind
from hub.sdk.expressions import Getter, compile_expression, plain_path
from hub.yamlio import Lines

DEFAULT_TIMEZONE = "Asia/Shanghai"
_TOP_KEYS = {"name", "description", "kind", "channel", "timezone", "when", "lookups", "fields"}
_SPEC_KEYS = {"path", "const", "template", "type", "tz", "format", "lookup", "default", "required", "root"}
_LIST_KEYS = {"each", "fields", "when"}
_TYPES = {"str", "int", "decimal", "float", "bool", "datetime", "date", "json"}
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


def _compile_field(
    target: str,
    raw: Any,
    tgt: Target,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
) -> FieldSpec:
    def fail(msg: str, sub: tuple[str | int, ...] = ()) -> MappingError:
        return lines.error((*path, *sub), f"{target}: {msg}", MappingError)  # type: ignore[return-value]

    if isinstance(raw, str):
        raw = {"path": raw}
    elif not isinstance(raw, dict):
        if isinstance(raw, bool | int | float):
            raw = {"const": raw}
        else:
            raise fail("expected an expression string or a field spec mapping")
    unknown = sorted(set(raw) - _SPEC_KEYS, key=str)
    if unknown:
        raise fail(
            f"unknown key(s) {unknown}; allowed: {sorted(_SPEC_KEYS)}{did_you_mean(unknown[0], _SPEC_KEYS)}",
            (unknown[0],),
        )
    sources = [k for k in ("path", "const", "template") if k in raw]
    if len(sources) != 1:
        raise fail("needs exactly one of path, const or template")
    natural = NATURAL.get(tgt.kind, "json")
    kind = raw.get("type", natural)
    if kind not in _TYPES:
        raise fail(f"unknown type {kind!r}; allowed: {sorted(_TYPES)}{did_you_mean(kind, _TYPES)}", ("type",))
    if tgt.kind not in COMPATIBLE[kind]:
        raise fail(f"cannot coerce type {kind!r} into a {tgt.kind} field", ("type",))
    fmt = raw.get("format")
    if fmt is not None and kind not in ("datetime", "date"):
        raise fail("format applies only to datetime and date", ("format",))
    zone = tz
    if "tz" in raw:
        try:
            zone = time_zone(str(raw["tz"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(f"unknown time zone {raw['tz']!r}", ("tz",)) from None
    lookup = None
    lookup_name = raw.get("lookup")
    if lookup_name is not None:
        if isinstance(lookup_name, dict):
            lookup = {str(k): v for k, v in lookup_name.items()}
            lookup_name = "<inline>"
        elif lookup_name not in lookups:
            raise fail(
                f"unknown lookup table {lookup_name!r}; defined: {sorted(lookups)}{did_you_mean(lookup_name, lookups)}",
                ("lookup",),
            )
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
    spec = FieldSpec(
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


def compile_mapping(
    data: Any, lines: Lines, name: str | None = None, *, namespaces: Collection[str] | None = None
) -> CompiledMapping:
    """Compile parsed mapping YAML; every problem is a ``MappingError`` naming file:line:field,
    all of a mapping's problems at once (``MappingErrors``) so ``cxhub check`` lists each.

    ``namespaces``: the identity namespaces ``customer.identities`` may use (the built-in ones
    plus the config's ``identity_namespaces``); None when there is no config to declare them
    (a mapping compiled on its own), and then any namespace is accepted.
    """
    if not isinstance(data, dict):
        raise lines.error((), "a mapping file must be a YAML mapping", MappingError)
    errors: list[MappingError] = []

    def error(path: tuple[str | int, ...], message: str) -> None:
        errors.append(lines.error(path, message, MappingError))  # type: ignore[arg-type]

    for key in sorted(set(data) - _TOP_KEYS, key=str):
        error((key,), f"unknown key {key!r}; allowed: {sorted(_TOP_KEYS)}{did_you_mean(key, _TOP_KEYS)}")
    mname = str(data.get("name") or name or Path(lines.file).stem)
    try:
        tz = time_zone(str(data.get("timezone", DEFAULT_TIMEZONE)))
    except (ZoneInfoNotFoundError, ValueError):
        error(("timezone",), f"unknown time zone {data.get('timezone')!r}")
        tz = time_zone(DEFAULT_TIMEZONE)
    lookups_raw = data.get("lookups") or {}
    lookups: dict[str, dict[str, Any]] = {}
    if not isinstance(lookups_raw, dict) or not all(isinstance(v, dict) for v in lookups_raw.values()):
        error(("lookups",), "lookups must map a table name to a mapping of code -> value")
    else:
        lookups = {k: {str(code): v for code, v in table.items()} for k, table in lookups_raw.items()}
    when = None
    if data.get("when") is not None:
        try:
            when = compile_expression(str(data["when"]))
        except ValueError as exc:
            error(("when",), str(exc))
    fields_raw = data.get("fields") or {}
    if not isinstance(fields_raw, dict):
        error(("fields",), "fields must map target field -> spec")
        fields_raw = {}
    compiled = CompiledMapping(
        name=mname, file=lines.file, kind=None, when=when, when_text=None if when is None else str(data["when"])
    )
    for top in ("kind", "channel"):
        if top in data:
            if top in fields_raw:
                error((top,), f"{top} is given both at the top and under fields")
                continue
            fields_raw = {top: {"const": data[top]}, **fields_raw}
            lines.lines[("fields", top)] = lines.line((top,)) or 0
    for target, raw in fields_raw.items():
        path: tuple[str | int, ...] = ("fields", target)
        try:
            _compile_target(compiled, str(target), raw, lines, path, lookups, tz, namespaces, errors)
        except MappingError as exc:
            errors.append(exc)
    # a field given but refused is reported once, not again as missing
    if compiled.kind is None and not _reported(errors, "kind"):
        error(("fields",), "kind: required (top-level `kind:` or fields.kind)")
    if not any(s.target == "occurred_at" for s in compiled.fields) and not _reported(errors, "occurred_at"):
        error(("fields",), "occurred_at: required")
    if errors:
        raise errors[0] if len(errors) == 1 else MappingErrors(_flatten(errors))
    compiled._make_builder()
    return compiled


def _reported(errors: list[MappingError], target: str) -> bool:
    keys = (f"fields.{target}", target)
    return any(e.key is not None and (e.key in keys or e.key.startswith(tuple(k + "." for k in keys))) for e in errors)


def _flatten(errors: list[MappingError]) -> list[ConfigError]:
    out: list[ConfigError] = []
    for e in errors:
        out.extend(e.errors if isinstance(e, ConfigErrors) else [e])
    return out


def _compile_target(
    compiled: CompiledMapping,
    target: str,
    raw: Any,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
    namespaces: Collection[str] | None,
    errors: list[MappingError],
) -> None:
    """Compile one entry of ``fields:`` into ``compiled``; raises its first problem (list and
    identity entries append one error per sub-field to ``errors`` instead)."""
    if target in HUB_OWNED:
        raise lines.error(path, f"{target}: is set by the hub, not by a mapping", MappingError)
    if target == "customer.identities":
        compiled.identities.extend(_compile_identities(raw, lines, path, lookups, tz, namespaces, errors))
        return
    tgt = EVENT_TARGETS.get(target)
    if tgt is None and target.startswith("attributes.") and len(target) > len("attributes."):
        tgt = Target("any")
    if tgt is None:
        hint = did_you_mean(target, [*EVENT_TARGETS, "customer.identities"])
        raise lines.error(path, f"{target}: unknown target field; see `cxhub schema`{hint}", MappingError)
    if tgt.kind == "model_list":
        compiled.lists.append(_compile_list(target, raw, tgt, lines, path, lookups, tz, errors))
        return
    spec = _compile_field(target, raw, tgt, lines, path, lookups, tz)
    if target == "kind":
        compiled.kind = spec
    else:
        compiled.fields.append(spec)


def _compile_identities(
    raw: Any,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
    namespaces: Collection[str] | None,
    errors: list[MappingError],
) -> list[IdentitySpec]:
    if not isinstance(raw, dict):
        raise lines.error(path, "customer.identities: expected a mapping of namespace -> expression", MappingError)
    out = []
    for ns, spec in raw.items():
        target = f"customer.identities.{ns}"
        if namespaces is not None and str(ns) not in namespaces:
            errors.append(
                lines.error(  # type: ignore[arg-type]
                    (*path, ns),
                    f"{target}: unknown identity namespace {str(ns)!r} (a namespace of your own is declared "
                    f"under `identity_namespaces:` in the config){did_you_mean(ns, namespaces)}",
                    MappingError,
                )
            )
            continue
        scope_raw = None
        if isinstance(spec, dict) and "scope" in spec:
            spec = dict(spec)
            scope_raw = spec.pop("scope")
        try:
            value = _compile_field(target, spec, Target("str"), lines, (*path, ns), lookups, tz)
            scope, option = None, None
            if isinstance(scope_raw, dict) and "option" in scope_raw:
                option = _scope_option(f"{target}.scope", scope_raw, lines, (*path, ns, "scope"))
            elif scope_raw is not None:
                scope = _compile_scope(f"{target}.scope", scope_raw, lines, (*path, ns, "scope"), lookups, tz)
            out.append(IdentitySpec(str(ns), value, scope, option))
        except MappingError as exc:
            errors.append(exc)
    return out


def _scope_option(target: str, raw: dict[str, Any], lines: Lines, path: tuple[str | int, ...]) -> str:
    """``scope: {option: app_id}``: the name of the source connector's option that holds the app id."""
    option = raw.get("option")
    if len(raw) != 1 or not isinstance(option, str) or not option.strip():
        raise lines.error(
            path,
            f"{target}: `option:` names one option of the source's connector (scope: {{option: app_id}}), alone",
            MappingError,
        )
    return option.strip()


def _compile_scope(
    target: str,
    raw: Any,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
) -> FieldSpec:
    """An identity's ``scope:``: the app it belongs to, as any field: an expression (``appid``),
    ``{const: wx8f...}`` for a literal, or a spec with a lookup."""
    if raw is None or raw == "" or isinstance(raw, bool | list):
        raise lines.error(
            path,
            f"{target}: expected the app the identity belongs to: an expression (scope: appid), a "
            "literal (scope: {const: wx8f3c...}) or the source's option (scope: {option: app_id})",
            MappingError,
        )
    spec = _compile_field(target, raw, Target("str"), lines, path, lookups, tz)
    if spec.is_const and spec.getter(None) in (None, ""):
        raise lines.error(path, f"{target}: an empty literal scope; name the app (the WeChat appid...)", MappingError)
    return spec


def _compile_list(
    target: str,
    raw: Any,
    tgt: Target,
    lines: Lines,
    path: tuple[str | int, ...],
    lookups: dict[str, dict[str, Any]],
    tz: ZoneInfo,
    errors: list[MappingError],
) -> ListSpec:
    if not isinstance(raw, dict) or "each" not in raw or "fields" not in raw:
        raise lines.error(path, f"{target}: a list field needs `each:` (expression) and `fields:`", MappingError)
    unknown = sorted(set(raw) - _LIST_KEYS, key=str)
    if unknown:
        raise lines.error(
            (*path, unknown[0]),
            f"{target}: unknown key(s) {unknown}; allowed: {sorted(_LIST_KEYS)}{did_you_mean(unknown[0], _LIST_KEYS)}",
            MappingError,
        )
    try:
        each = compile_expression(str(raw["each"]))
        when = compile_expression(str(raw["when"])) if raw.get("when") else None
    except ValueError as exc:
        raise lines.error((*path, "each"), f"{target}: {exc}", MappingError) from None
    assert tgt.item_model is not None
    item_targets = model_targets(tgt.item_model)
    specs = []
    if not isinstance(raw["fields"], dict):
        raise lines.error((*path, "fields"), f"{target}: fields must be a mapping", MappingError)
    for sub, sub_raw in raw["fields"].items():
        st = item_targets.get(sub)
        if st is None:
            errors.append(
                lines.error(  # type: ignore[arg-type]
                    (*path, "fields", sub),
                    f"{target}.{sub}: unknown field; allowed: {sorted(item_targets)}{did_you_mean(sub, item_targets)}",
                    MappingError,
                )
            )
            continue
        try:
            specs.append(_compile_field(sub, sub_raw, st, lines, (*path, "fields", sub), lookups, tz))
        except MappingError as exc:
            errors.append(exc)
    return ListSpec(target=target, each=each, when=when, fields=specs, each_keys=plain_path(str(raw["each"])))
