"""The mapping engine's fast paths do exactly what the slow ones do.

(The JMESPath compiler's own comparison with jmespath is tests/sdk/test_expressions.py.)

- coercions: ``coercer()`` / ``coerce()`` against the implementation they replaced (copied below);
- documents: the generated builder of every preset mapping and of mappings using every feature
  against ``CompiledMapping.interpret`` (the spec walker it was generated from), on the fixture
  inputs with each value in turn replaced by awkward ones (None, "", wrong types, nested...).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.errors import RecordError
from hub.mapping import (
    CompiledMapping,
    coerce,
    coercer,
    list_presets,
    load_mapping_file,
    load_mapping_text,
)
from hub.yamlio import load_yaml

# ---------------------------------------------------------------- comparing results


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, dict keys in the same order, Decimals with the same digits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return a == b and repr(a) == repr(b) and a.fold == b.fold
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, Decimal | float | date | time):  # 1.50 == 1.5, -0.0 == 0.0, NaN: the digits
        return repr(a) == repr(b)
    return a == b


def _show(value: Any) -> str:
    try:
        return repr(value)[:300]
    except ValueError:  # an int of over 4,300 digits
        return f"<{type(value).__name__} of {value.bit_length()} bits>"


def _outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("value", fn(*args))
    except RecordError as exc:
        return ("record error", str(exc), exc.field, exc.reason)
    except Exception as exc:
        return ("error", type(exc), str(exc))


def _assert_same_outcome(fast: tuple[Any, ...], slow: tuple[Any, ...], what: str) -> None:
    if fast[0] == "value" and slow[0] == "value":
        assert _same(fast[1], slow[1]), f"{what}:\n fast {_show(fast[1])}\n slow {_show(slow[1])}"
    else:
        assert fast == slow, f"{what}:\n fast {_show(fast)}\n slow {_show(slow)}"


# ---------------------------------------------------------------- coercions: the code they replaced

_TRUE = {"1", "true", "t", "yes", "y", "是", "on"}
_FALSE = {"0", "false", "f", "no", "n", "否", "off", ""}


def _old_coerce(value: Any, kind: str, *, tz: ZoneInfo, fmt: str | None = None) -> Any:
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
        return _old_to_datetime(value, tz, fmt)
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
    raise ValueError(f"unknown type {kind!r}")


def _old_to_datetime(value: Any, tz: ZoneInfo, fmt: str | None) -> datetime:
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


class _StrSub(str):
    pass


class _IntSub(int):
    pass


_AWKWARD: list[Any] = [
    None,
    "",
    "  ",
    "abc",
    "12.90",
    " 12.90 ",
    "1,234.50",
    "1_000",
    "-0",
    "1e3",
    "NaN",
    "Infinity",
    "7.0",
    "42",
    "是",
    "N",
    "off",
    "2026-11-02 10:15:00",
    " 2026-11-02T10:15:00+09:00 ",
    "2026-11-02",
    "2026-03-29 02:30:00",
    "20261102101500",
    "1761955200",
    "1761955200000",
    _StrSub("12.5"),
    0,
    1,
    -7,
    42,
    1761955200,
    1761955200000,
    10**30,
    10**5000,
    _IntSub(5),
    1.5,
    0.1,
    float("inf"),
    True,
    False,
    Decimal("12.90"),
    Decimal("7.0"),
    Decimal("-0.00"),
    Decimal("NaN"),
    Decimal("1E+3"),
    datetime(2026, 11, 2, 10, 15),
    datetime(2026, 10, 25, 1, 30, fold=1),
    datetime(2026, 11, 2, 10, 15, tzinfo=UTC),
    datetime(2026, 11, 2, 10, 15, tzinfo=timezone(timedelta(hours=-5))),
    datetime(1, 1, 1, 0, 0),
    date(2026, 11, 2),
    b"\xe4\xb8\xad",
    {"a": 1},
    [1, 2],
]


@pytest.mark.parametrize("kind", ["str", "int", "decimal", "float", "bool", "datetime", "date", "json"])
@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/London", "UTC"])
def test_coercions_match_the_code_they_replaced(kind: str, zone: str) -> None:
    tz = ZoneInfo(zone)
    formats: list[str | None] = [None]
    if kind == "datetime":
        formats += ["epoch", "epoch_ms", "%Y%m%d%H%M%S"]
    if kind == "date":
        formats += ["%Y%m%d"]
    for fmt in formats:
        fn = coercer(kind, tz, fmt)
        for value in _AWKWARD:
            slow = _outcome(lambda v: _old_coerce(v, kind, tz=tz, fmt=fmt), value)  # noqa: B023
            _assert_same_outcome(_outcome(fn, value), slow, f"{kind} {fmt} {_show(value)}")
            _assert_same_outcome(
                _outcome(lambda v: coerce(v, kind, tz=tz, fmt=fmt), value),  # noqa: B023
                slow,
                f"coerce {kind} {fmt} {_show(value)}",
            )


# ---------------------------------------------------------------- documents

_FEATURE_MAPPINGS = [
    # every kind of field spec at the top level and in a list
    """\
name: features
timezone: Europe/London
when: "status != 'VOID' && !skip"
lookups:
  kinds: {t: transaction, r: review}
  cats: {"10": 生鲜, "11": null, "20": "", "30": 30}
fields:
  kind: {path: k, lookup: kinds, default: other}
  occurred_at: {path: at, type: datetime}
  org.district: {path: district, default: null}
  channel: {path: ch, default: web}
  org.store: {path: store.code, required: true}
  org.store_name: {path: store.name, lookup: {"1": One, "2": ""}}
  org.region: {template: "{store.region}-{store.code}"}
  org.brand: {path: "brand || 'house'"}
  org.staff: {path: staff, type: str}
  order.id: {path: order_no, type: str, required: true}
  order.amount: {path: total, type: decimal, default: "0"}
  order.currency: {const: CNY}
  order.items:
    each: lines
    when: "qty != `0`"
    fields:
      sku: {path: sku, required: true}
      name: {path: order_no, root: true}
      category: {path: cat, lookup: cats, default: 其他}
      qty: {path: qty, type: decimal, default: 1}
      price: {path: price, type: float}
      amount: {path: amount, type: int}
  customer.identities:
    member_id: member.no
    phone: {path: member.mobile, type: int}
    openid: {path: member.openid, default: ""}
    unionid: {const: null}
  customer.member_level: {path: member.level, lookup: {g: gold}, default: normal}
  feedback.nps: {path: nps, type: int}
  feedback.text: {template: "{title}: {body}"}
  attributes.flag: {path: flag, type: bool}
  attributes.day: {path: day, type: date}
  attributes.epoch: {path: ts, type: datetime, format: epoch_ms}
  attributes.raw: {path: store, type: json}
  attributes.const: {const: {a: 1}}
  attributes.none: {const: null, default: fallback}
""",
    # shared path prefixes, a list from a nested path, a root-level list `when`
    """\
name: prefixes
kind: transaction
fields:
  occurred_at: {path: a.b.at, type: datetime, format: "%Y%m%d%H%M%S", tz: UTC}
  org.store: a.b.c
  org.store_name: a.b.d
  org.region: a.e
  order.items: {each: a.b.lines, fields: {sku: x.y, name: x.z}}
  attributes.deep.er: a.b.c
""",
    # targets inside one another: the spec walker builds these
    """\
name: nested
kind: transaction
fields:
  occurred_at: at
  attributes: {path: extra}
  attributes.x: {path: x}
""",
]


def _fixture_inputs() -> Iterator[tuple[CompiledMapping, Any]]:
    for path in list_presets():
        mapping = load_mapping_file(path)
        if mapping.fixtures_path is None:
            continue
        cases, _ = load_yaml(mapping.fixtures_path)
        for case in cases:
            yield mapping, case["input"]


_FEATURE_INPUTS: list[Any] = [
    {
        "status": "PAID",
        "k": "t",
        "at": "2026-11-02 10:15:00",
        "ch": "pos",
        "store": {"code": "S1", "name": 1, "region": "华东"},
        "brand": "b",
        "staff": 88,
        "order_no": "O1",
        "total": "12.50",
        "lines": [
            {"sku": "a", "name": "n", "cat": "10", "qty": 2, "price": "1.5", "amount": "3"},
            {"sku": "b", "cat": "11", "qty": 0},
            {"sku": "c", "cat": "20", "qty": "1.5", "price": 2, "amount": 7},
            {"sku": "d", "cat": "30"},
        ],
        "member": {"no": "M1", "mobile": "13800138000", "openid": "o1", "level": "g"},
        "nps": "9",
        "title": "t",
        "body": "b",
        "flag": "yes",
        "ts": 1761955200000,
        "day": "2026-11-02",
    },
    {"a": {"b": {"at": "20261102101500", "c": "S", "d": "D", "lines": [{"x": {"y": 1, "z": 2}}, {"x": 3}]}, "e": 1}},
    {"at": "2026-11-02T10:15:00+08:00", "extra": {"k": "v"}, "x": 1},
    {"at": "2026-11-02T10:15:00+08:00", "extra": None, "x": 1},
    {"at": "2026-11-02T10:15:00+08:00", "extra": "text", "x": 1},
]


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*path, k)
            yield from _leaves(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield (*path, i)
            yield from _leaves(v, (*path, i))


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        out = dict(data)
        if value is _DELETE and not rest:
            del out[head]
        else:
            out[head] = _replace(data[head], rest, value)
        return out
    out_list = list(data)
    out_list[head] = _replace(data[head], rest, None if value is _DELETE and not rest else value)
    return out_list


_DELETE = object()
_SUBSTITUTES: list[Any] = [
    _DELETE,
    None,
    "",
    " ",
    "abc",
    "VOID",
    "10",
    "12,345.5",
    "NaN",
    "2026-11-02 10:15:00",
    "2026-11-02T10:15:00+09:00",
    0,
    1,
    1.5,
    True,
    False,
    Decimal("7.50"),
    datetime(2026, 11, 2, 10, 15),
    datetime(2026, 11, 2, 10, 15, tzinfo=UTC),
    date(2026, 11, 2),
    {"code": "S9", "order_no": "x"},
    [],
    [{"sku": "z", "qty": "2"}],
    b"bytes",
]


def _check_builders(mapping: CompiledMapping, payload: Any) -> None:
    for received_at in (None, datetime(2026, 11, 2, tzinfo=UTC)):
        args = (payload, "src", "ext-1", received_at)
        fast = _outcome(lambda p, s, e, r: mapping.build_doc(p, source=s, external_id=e, received_at=r), *args)
        _assert_same_outcome(fast, _outcome(mapping.interpret, *args), f"{mapping.name} on {_show(payload)}")


def test_generated_builders_match_the_spec_walker_on_awkward_inputs() -> None:
    pairs = list(_fixture_inputs())
    pairs += [(load_mapping_text(text, "f.yaml"), p) for text in _FEATURE_MAPPINGS for p in _FEATURE_INPUTS]
    assert len({m.name for m, _ in pairs}) >= len(list_presets())
    checked = 0
    for mapping, payload in pairs:
        _check_builders(mapping, payload)
        for leaf in _leaves(payload):
            for value in _SUBSTITUTES:
                _check_builders(mapping, _replace(payload, leaf, value))
                checked += 1
        for other in ([], "text", None, {"lines": {"sku": "one"}}):
            _check_builders(mapping, other)
    assert checked > 10_000, checked


def test_presets_use_generated_builders() -> None:
    for path in list_presets():
        mapping = load_mapping_file(path)
        mapping._make_builder()
        assert mapping.builder_source.startswith("def build("), mapping.name
    nested = load_mapping_text(_FEATURE_MAPPINGS[2], "n.yaml")
    nested._make_builder()
    assert nested.builder_source == ""  # targets inside one another: the spec walker


def test_mapping_strings_never_become_source() -> None:
    evil = "x'] = 1; import os; os_system('echo pwned') #\"\n{}"  # no dot: a target splits on dots
    q = json.dumps(evil, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    text = f"""\
name: evil
kind: transaction
lookups:
  t: {{{q}: {q}}}
fields:
  occurred_at: at
  org.store: {{path: {json.dumps(json.dumps(evil))}, lookup: t, default: {q}}}
  {json.dumps("attributes." + evil)}: {{const: {q}}}
  order.items: {{each: items, fields: {{sku: {{const: {q}}}, name: {json.dumps(json.dumps(evil))}}}}}
  customer.identities: {{{q}: {{const: {q}}}}}
"""
    mapping = load_mapping_text(text, "evil.yaml")
    payload = {"at": "2026-11-02 10:00:00", evil: evil, "items": [{evil: "n"}]}
    doc = mapping.build_doc(payload, source="s", external_id="1")
    assert doc is not None
    assert doc["org"]["store"] == evil and doc["attributes"] == {evil: evil}
    assert doc["order"]["items"] == [{"sku": evil, "name": "n"}]
    assert doc["customer"]["identities"] == [{"namespace": evil, "value": evil}]
    assert mapping.builder_source.startswith("def build(")
    for s in ("x'] = 1", "import os", "pwned"):
        assert s not in mapping.builder_source
    assert _same(doc, mapping.interpret(payload, "s", "1"))


def test_record_errors_name_list_elements() -> None:
    mapping = load_mapping_text(_FEATURE_MAPPINGS[0], "f.yaml")
    payload = dict(_FEATURE_INPUTS[0])
    payload["lines"] = [{"sku": "a", "price": "1"}, {"sku": "b", "price": "x"}]
    with pytest.raises(RecordError) as info:
        mapping.apply(payload, source="s", external_id="1")
    assert str(info.value) == "order.items[1].price: 'x' is not a number"
    payload["lines"] = [{"sku": "a"}, {"name": "no sku"}]
    with pytest.raises(RecordError) as info:
        mapping.apply(payload, source="s", external_id="1")
    assert str(info.value) == "order.items[1].sku: required value is missing"
