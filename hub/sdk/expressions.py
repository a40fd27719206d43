"""JMESPath expressions compiled to getters: how mappings and connectors read a payload.

``compile_expression("a.b")`` gives a function of the payload. A plain ``a.b.c`` path becomes
chained dict lookups; the common nodes of a filter (fields, literals, comparisons, ``&& || !``)
become closures; every other node is evaluated by jmespath's own interpreter. A bad expression is
a ``ValueError`` carrying the parser's reason, raised when it is compiled, never per payload.
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Callable, Mapping
from functools import cache
from numbers import Number
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.visitor

Getter = Callable[[Any], Any]


def _fast_getter(parsed: dict[str, Any]) -> Getter | None:
    """A plain ``a.b.c`` path becomes chained dict lookups: the common case, 10x faster."""
    keys = plain_keys(parsed)
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


def plain_keys(parsed: dict[str, Any]) -> tuple[str, ...] | None:
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
    return plain_keys(_parse(expression))


# JMESPath evaluation without jmespath's per-call costs. ``ParsedResult.search`` builds a
# ``TreeInterpreter`` (and its function table) on every call and dispatches every node through
# ``visit``; the common nodes of a filter (fields, literals, comparisons, && || !) become closures
# here that do exactly what ``jmespath.visitor.TreeInterpreter`` does (tests/sdk/
# test_expressions.py runs many expressions and payloads through both). Every other node is
# evaluated by one shared interpreter: it keeps no state between calls.
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
        keys = plain_keys(node)
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
        keys = plain_keys(left_node)
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


__all__ = ["Getter", "compile_expression", "plain_path"]
