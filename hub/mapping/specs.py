"""The compiled form of a mapping's fields, and the helpers both document builders call per record.

A ``FieldSpec`` is one target field with its getter, coercion, lookup and default settled at load;
its ``value`` is the reference the generated builder follows step by step (``codegen``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hub.errors import RecordError
from hub.mapping.coerce import as_is, coercer
from hub.sdk.expressions import Getter


class Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = Missing()


_PASSTHROUGH: dict[str, builtins.type] = {"str": str, "decimal": Decimal, "int": int, "bool": bool}


@dataclass
class FieldSpec:
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
    coerce_fn: Callable[[Any], Any] = as_is

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
                raise RecordError(lookup_miss(raw, self.lookup_name), field=self.target)
        if type(raw) is self.passthrough:
            return raw
        if self.type == "json":
            return raw
        try:
            return self.coerce_fn(raw)
        except ValueError as exc:
            raise RecordError(str(exc), field=self.target) from None


@dataclass
class ListSpec:
    target: str
    each: Getter
    when: Getter | None
    fields: list[FieldSpec]
    each_keys: tuple[str, ...] | None = None


#: the longest scope the store keeps (``identities.scope``)
SCOPE_MAX = 128


@dataclass
class IdentitySpec:
    """One ``customer.identities`` entry; ``scope``: the app the identity belongs to (an openid is
    per WeChat app: ``scope`` says which), itself a field (a literal or an expression)."""

    namespace: str
    spec: FieldSpec
    scope: FieldSpec | None = None
    #: ``scope: {option: app_id}``: the scope is that option of the source's connector, bound when
    #: the config loads (:meth:`CompiledMapping.bind_options`); unbound (``cxhub map test``) none
    scope_option: str | None = None

    def put(self, payload: Any, ids: list[dict[str, Any]]) -> None:
        """Append this identity of ``payload`` to ``ids`` (nothing when it has no value); a scoped
        identity whose scope finds nothing is a ``RecordError``: stored without its app, an openid
        would be offered to every app's channel."""
        v = self.spec.value(payload, payload)
        if v is MISSING or v is None or v == "":
            return
        if self.scope is None:
            ids.append({"namespace": self.namespace, "value": v})
            return
        sc = self.scope.value(payload, payload)
        if sc is MISSING or sc is None or sc == "":
            raise RecordError(
                "the identity has a value but its scope (the app it belongs to) found none", field=self.scope.target
            )
        sc = str(sc)
        if len(sc) > SCOPE_MAX:
            raise RecordError(f"a scope of {len(sc)} characters (at most {SCOPE_MAX})", field=self.scope.target)
        ids.append({"namespace": self.namespace, "scope": sc, "value": v})


Builder = Callable[[Any, str, str, datetime | None], dict[str, Any] | None]


def const_spec(target: str, value: str) -> FieldSpec:
    """A text field that is always ``value``."""

    def const_getter(_: Any) -> str:
        return value

    return FieldSpec(target, const_getter, "str", ZoneInfo("UTC"), None, None, None, MISSING, False, is_const=True)


def lookup_miss(raw: Any, table: str | None) -> str:
    return f"{raw!r} is not in lookup table {table!r}"


def item_field(target: str, index: int, sub: str) -> str:
    return f"{target}[{index}].{sub}"


def not_a_list(value: Any) -> str:
    return f"expected a list, got {type(value).__name__}"


def _no_get(_: Any) -> None:
    return None


def getter_of(data: Any) -> Callable[[Any], Any]:
    """``data.get`` for a mapping, else a get that finds nothing (as the path getters treat it)."""
    return data.get if isinstance(data, Mapping) else _no_get
