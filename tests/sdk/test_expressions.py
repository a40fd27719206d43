"""The JMESPath compiler's fast paths do exactly what jmespath does.

``compile_expression`` (closures for fields, literals, comparisons, ``&& || !``; one shared
interpreter for the rest) against ``jmespath.compile(...).search`` on hand-picked and generated
expressions x payloads: the same value (same types, same dict order, same Decimal digits) or the
same error.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import jmespath

from hub.sdk.expressions import compile_expression, plain_path


def _outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("value", fn(*args))
    except Exception as exc:
        return ("error", type(exc), str(exc))


def _show(value: Any) -> str:
    return repr(value)[:300]


def _assert_same_outcome(fast: tuple[Any, ...], slow: tuple[Any, ...], what: str) -> None:
    # payloads hold None, bool, int, float, Decimal, str, lists and dicts: equal reprs mean the
    # same types all the way down (1, 1.0, True and Decimal("1") all differ), dict keys in the
    # same order, the same digits
    assert repr(fast) == repr(slow), f"{what}:\n fast {_show(fast)}\n slow {_show(slow)}"


_FIELDS = ["a", "b", "status", '"x y"']
_LITERALS = [
    "'PAID'",
    "'VOID'",
    "''",
    "'0'",
    "`0`",
    "`1`",
    "`2`",
    "`-1`",
    "`1.5`",
    "`0.0`",
    "`1.0`",
    "`true`",
    "`false`",
    "`null`",
    '`"x"`',
    "`[]`",
    "`{}`",
    "`[0]`",
    '`{"b": 1}`',
]
_OPS = ["==", "!=", "<", "<=", ">", ">="]


def _path(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        return rng.choice(_FIELDS)
    if r < 0.8:
        return ".".join(rng.choice(_FIELDS) for _ in range(rng.randint(2, 3)))
    if r < 0.88:
        return "@"
    if r < 0.94:
        return f"{rng.choice(_FIELDS)}[0]"  # an index: the shared interpreter's part
    return f"length({rng.choice(_FIELDS)})"


def _expr(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth >= 3 or r < 0.25:
        return _path(rng) if rng.random() < 0.8 else rng.choice(_LITERALS)
    if r < 0.6:
        left = _path(rng) if rng.random() < 0.8 else rng.choice(_LITERALS)
        right = rng.choice(_LITERALS) if rng.random() < 0.7 else _path(rng)
        if rng.random() < 0.2:
            left, right = right, left
        return f"{left} {rng.choice(_OPS)} {right}"
    if r < 0.75:
        return f"({_expr(rng, depth + 1)}) && ({_expr(rng, depth + 1)})"
    if r < 0.88:
        return f"({_expr(rng, depth + 1)}) || ({_expr(rng, depth + 1)})"
    if r < 0.95:
        return f"!({_expr(rng, depth + 1)})"
    return f"{rng.choice(_FIELDS)}[?{_expr(rng, depth + 1)}]"  # a filter projection


_VALUES: list[Any] = [
    None,
    0,
    1,
    2,
    -1,
    0.0,
    1.0,
    1.5,
    True,
    False,
    "",
    "PAID",
    "VOID",
    "0",
    "x",
    [],
    {},
    [0],
    [1, "x"],
    Decimal("0"),
    Decimal("1"),
    Decimal("1.50"),
]


def _payload(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 2 and r < 0.35:
        return {k.strip('"'): _payload(rng, depth + 1) for k in _FIELDS if rng.random() < 0.7}
    if depth < 2 and r < 0.42:
        return [_payload(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(_VALUES)


def test_simple_expressions_match_jmespath() -> None:
    cases = [
        "status != 'VOID'",
        "status == 'PAID'",
        "a.b == 'x'",
        "a.b != 'x'",
        "'x' == a",
        "a == `1`",
        "a != `0`",
        "a == `true`",
        "a == b",
        "a > `0`",
        "a <= 'm'",
        "status == 'PAID' && a.b != 'x'",
        "status == 'PAID' || a",
        "!a",
        "!(a == `1`)",
        "a && b",
        "a || b",
        "@",
        "a[0] == `1`",
        "length(a) > `1`",
    ]
    payloads = [
        {"status": "PAID", "a": {"b": "x"}},
        {"status": "VOID", "a": {"b": "y"}, "b": 0},
        {"a": 1, "b": True},
        {"a": 0, "b": False},
        {"a": True, "b": 1},
        {"a": "m", "b": "m"},
        {"a": [1, 2], "b": []},
        {"a": None},
        {"a": "x"},
        {"a": Decimal("1")},
        {},
        [],
        "text",
        None,
        0,
    ]
    for expr in cases:
        fast = compile_expression(expr)
        slow = jmespath.compile(expr)
        for p in payloads:
            _assert_same_outcome(_outcome(fast, p), _outcome(slow.search, p), f"{expr!r} on {_show(p)}")


def test_generated_expressions_match_jmespath() -> None:
    rng = random.Random(20261102)
    payloads = [_payload(rng) for _ in range(40)] + [{"a": v, "b": w} for v in _VALUES for w in (None, 1, "x")]
    checked = 0
    for _ in range(1500):
        expr = _expr(rng)
        fast = compile_expression(expr)
        slow = jmespath.compile(expr)
        for p in payloads:
            _assert_same_outcome(_outcome(fast, p), _outcome(slow.search, p), f"{expr!r} on {_show(p)}")
            checked += 1
    assert checked == 1500 * len(payloads)


def test_expression_fast_paths_are_taken() -> None:
    # the comparison is a closure, not jmespath's per-call interpreter
    assert compile_expression("status != 'VOID'").__name__ == "field_ne"
    assert compile_expression("a.b == 'x'").__name__ == "path_eq"
    assert compile_expression("a == `1` && !b").__name__ == "and_"
    assert compile_expression("a[0]").__name__ == "interpreted"


def test_plain_paths() -> None:
    assert plain_path("a") == ("a",)
    assert plain_path("a.b.c") == ("a", "b", "c")
    assert plain_path("a[0]") is None
    assert plain_path("a == 'x'") is None
    assert compile_expression("a.b")({"a": {"b": 1}}) == 1
    assert compile_expression("a.b")({"a": "text"}) is None


def test_bad_expression_is_value_error_with_the_reason() -> None:
    try:
        compile_expression("a ===")
    except ValueError as exc:
        assert "bad expression 'a ==='" in str(exc)
    else:
        raise AssertionError("no error")
