"""Mapping engine: compile-time errors name file:line:field; run-time errors name the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hub.errors import MappingError, RecordError
from hub.mapping import coerce, load_mapping_text
from hub.model import EventKind

BASE = """\
name: t
kind: transaction
fields:
  occurred_at: {path: at, type: datetime}
"""


def m(extra: str = "", head: str = BASE):
    return load_mapping_text(head + extra, "t.yaml")


@pytest.mark.parametrize(
    ("yaml_text", "line", "needle"),
    [
        (BASE + "  order.amout: total\n", 5, "order.amout: unknown target field"),
        (BASE + "  order.amount: {path: 'total[', type: decimal}\n", 5, "bad expression"),
        (BASE + "  order.amount: {path: total, type: datetime}\n", 5, "cannot coerce type 'datetime' into a decimal"),
        (BASE + "  org.store: {path: s, lookup: nope}\n", 5, "unknown lookup table 'nope'"),
        (BASE + "  org.store: {path: s, const: x}\n", 5, "exactly one of path, const or template"),
        (BASE + "  org.store: {path: s, typo: 1}\n", 5, "unknown key(s) ['typo']"),
        (BASE + "  id: x\n", 5, "set by the hub"),
        (BASE + "  occurred_at: {path: at, tz: Mars/Base}\n", 5, "fields: duplicate key 'occurred_at'"),
        ("name: t\nkind: purchase\nfields:\n  occurred_at: at\n", 2, "'purchase' is not an event kind"),
        ("name: t\nkind: transaction\nfields:\n  channel: c\n", 3, "occurred_at: required"),
        ("name: t\nkind: transaction\nbogus: 1\nfields:\n  occurred_at: at\n", 3, "unknown key 'bogus'"),
        (BASE + "  order.items: {each: lines, fields: {colour: c}}\n", 5, "order.items.colour: unknown field"),
        (BASE + "  order.amount: {path: t, type: decimal, default: abc}\n", 5, "default 'abc'"),
        ("name: t\nkind: transaction\nwhen: 'a ==='\nfields:\n  occurred_at: at\n", 3, "bad expression"),
        ("name: t\nkind: [transaction\n", 3, "invalid YAML"),
        (BASE + "  occurred_at2: {path: at, tz: Mars/Base}\n", 5, "unknown target field"),
        (BASE.replace("type: datetime}", "type: datetime, tz: Mars/Base}"), 4, "unknown time zone"),
    ],
)
def test_compile_errors_name_file_line_and_field(yaml_text: str, line: int, needle: str) -> None:
    with pytest.raises(Exception) as info:
        load_mapping_text(yaml_text, "t.yaml")
    msg = str(info.value)
    assert needle in msg, msg
    assert msg.startswith(f"t.yaml:{line}:"), msg


def test_compile_error_is_mapping_error() -> None:
    with pytest.raises(MappingError):
        m("  nope: x\n")


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("decimal", "1,234.50", Decimal("1234.50")),
        ("decimal", 3, Decimal(3)),
        ("int", "42", 42),
        ("int", Decimal("7.0"), 7),
        ("bool", "是", True),
        ("bool", "N", False),
        ("bool", 0, False),
        ("str", Decimal("1.50"), "1.50"),
        ("str", b"\xe4\xb8\xad", "中"),
    ],
)
def test_coercions(kind: str, raw: object, expected: object) -> None:
    from zoneinfo import ZoneInfo

    assert coerce(raw, kind, tz=ZoneInfo("Asia/Shanghai")) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "needle"),
    [
        ("decimal", "abc", "not a number"),
        ("decimal", "NaN", "not a finite number"),
        ("decimal", True, "expected a number"),
        ("int", "3.5", "not an integer"),
        ("bool", "maybe", "not a yes/no value"),
        ("datetime", "tomorrow", "not a date-time"),
        ("str", {"a": 1}, "expected text"),
    ],
)
def test_bad_values_are_refused(kind: str, raw: object, needle: str) -> None:
    from zoneinfo import ZoneInfo

    with pytest.raises(ValueError, match=needle):
        coerce(raw, kind, tz=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize(
    ("spec", "raw", "utc"),
    [
        ("{path: at, type: datetime}", "2026-11-01 08:00:00", "2026-11-01T00:00:00+00:00"),
        ("{path: at, type: datetime, tz: UTC}", "2026-11-01 08:00:00", "2026-11-01T08:00:00+00:00"),
        ("{path: at, type: datetime}", "2026-11-01T08:00:00+09:00", "2026-10-31T23:00:00+00:00"),
        ("{path: at, type: datetime, format: epoch_ms}", 1761955200000, "2025-11-01T00:00:00+00:00"),
        ("{path: at, type: datetime, format: epoch}", "1761955200", "2025-11-01T00:00:00+00:00"),
        ("{path: at, type: datetime, format: '%Y%m%d%H%M%S'}", "20261101080000", "2026-11-01T00:00:00+00:00"),
    ],
)
def test_datetimes_use_the_source_time_zone(spec: str, raw: object, utc: str) -> None:
    mapping = load_mapping_text(f"name: t\nkind: transaction\nfields:\n  occurred_at: {spec}\n", "t.yaml")
    ev = mapping.apply({"at": raw}, source="s", external_id="1")
    assert ev is not None
    assert ev.occurred_at.isoformat() == utc


def test_full_mapping_lists_lookups_templates_identities_and_when() -> None:
    mapping = m(
        """\
  channel: {const: pos}
  org.store: {path: store, lookup: {"1": S001}}
  order.amount: {path: total, type: decimal}
  order.items:
    each: lines
    when: "qty > `0`"
    fields:
      sku: sku
      category: {path: cat, lookup: cats, default: 其他}
      price: {path: price, type: decimal}
      qty: {path: qty, type: decimal}
  customer.identities: {member_id: member, phone: mobile}
  feedback.text: {template: "{title} - {body}"}
  attributes.raw_total: {path: total, root: true}
""",
        head="name: t\nkind: transaction\nwhen: \"status == 'PAID'\"\nlookups:\n  cats: {'10': 生鲜}\nfields:\n"
        "  occurred_at: {path: at, type: datetime}\n",
    )
    raw = {
        "status": "PAID",
        "at": "2026-11-01 10:00:00",
        "store": 1,
        "total": "9.90",
        "member": "M1",
        "mobile": None,
        "title": "好",
        "body": "新鲜",
        "lines": [{"sku": "a", "cat": "10", "price": "1", "qty": 2}, {"sku": "b", "cat": "77", "price": "2", "qty": 0}],
    }
    ev = mapping.apply(raw, source="pos", external_id="O1")
    assert ev is not None
    assert ev.kind is EventKind.transaction and ev.channel == "pos" and ev.org.store == "S001"
    assert [(i.sku, i.category, i.qty) for i in ev.order.items] == [("a", "生鲜", Decimal(2))]
    assert [(i.namespace, i.value) for i in ev.customer.identities] == [("member_id", "M1")]
    assert ev.feedback is not None and ev.feedback.text == "好 - 新鲜"
    assert ev.attributes == {"raw_total": "9.90"}
    assert mapping.apply({**raw, "status": "VOID"}, source="pos", external_id="O1") is None


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"at": "2026-11-01 10:00:00", "lines": [{"price": "x"}]}, "order.items[0].price: 'x' is not a number"),
        ({"at": "2026-11-01 10:00:00", "lines": "nope"}, "order.items: expected a list"),
        ({"at": None}, "occurred_at"),
        ({"at": "2026-11-01 10:00:00", "store": "9"}, "org.store: '9' is not in lookup table"),
    ],
)
def test_record_errors_name_the_field(raw: dict, needle: str) -> None:
    mapping = m(
        "  org.store: {path: store, lookup: {'1': S1}}\n  order.items:\n    each: lines\n    fields:\n"
        "      price: {path: price, type: decimal}\n"
    )
    with pytest.raises(RecordError) as info:
        mapping.apply(raw, source="s", external_id="1")
    assert needle in str(info.value)


def test_ids_are_deterministic() -> None:
    mapping = m()
    a = mapping.apply({"at": "2026-11-01 10:00:00"}, source="s", external_id="1")
    b = mapping.apply({"at": "2026-11-02 10:00:00"}, source="s", external_id="1")
    c = mapping.apply({"at": "2026-11-02 10:00:00"}, source="t", external_id="1")
    assert a and b and c and a.id == b.id != c.id


def test_presets_fixtures_all_pass() -> None:
    from hub.mapping.fixtures import run_fixtures

    results = run_fixtures()
    assert results, "no preset fixtures found"
    failed = [f"{r.mapping}: {r.case}: {r.detail}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def test_bare_path_gets_the_targets_natural_coercion() -> None:
    mapping = load_mapping_text("name: t\nkind: review\nfields:\n  occurred_at: at\n  feedback.nps: score\n", "t.yaml")
    ev = mapping.apply({"at": "2026-11-01 08:00:00", "score": "9"}, source="s", external_id="1")
    assert ev is not None and ev.occurred_at.isoformat() == "2026-11-01T00:00:00+00:00"
    assert ev.feedback is not None and ev.feedback.nps == 9


# ---------------------------------------------------------------- identity namespaces, suggestions


def test_known_namespaces_are_the_builtin_ones_and_the_declared() -> None:
    from hub.mapping.targets import BUILTIN_NAMESPACES, known_namespaces

    assert known_namespaces(["loyalty_card"]) == {*BUILTIN_NAMESPACES, "loyalty_card"}


@pytest.mark.parametrize(
    ("identities", "declared", "needle"),
    [
        (
            "{emial: mail}",
            (),
            "fields.customer.identities.emial: customer.identities.emial: unknown identity namespace",
        ),
        ("{member_id: m, emial: mail}", (), "did you mean 'email'?"),
        ("{opnid: o}", (), "did you mean 'openid'?"),
        ("{loyalty_crad: c}", ("loyalty_card",), "did you mean 'loyalty_card'?"),
        ("{loyalty_card: c}", (), "declared under `identity_namespaces:`"),
    ],
)
def test_undeclared_namespaces_are_errors(identities: str, declared: tuple[str, ...], needle: str) -> None:
    from hub.mapping.targets import known_namespaces

    text = BASE + f"  customer.identities: {identities}\n"
    with pytest.raises(MappingError) as info:
        load_mapping_text(text, "t.yaml", namespaces=known_namespaces(declared))
    assert needle in str(info.value) and str(info.value).startswith("t.yaml:5:"), str(info.value)


@pytest.mark.parametrize(
    ("identities", "declared"),
    [("{email: mail, phone: p}", ()), ("{loyalty_card: c, member_id: m}", ("loyalty_card",))],
)
def test_builtin_and_declared_namespaces_compile(identities: str, declared: tuple[str, ...]) -> None:
    from hub.mapping.targets import known_namespaces

    text = BASE + f"  customer.identities: {identities}\n"
    mapping = load_mapping_text(text, "t.yaml", namespaces=known_namespaces(declared))
    assert [i.namespace for i in mapping.identities] == [n.split(":")[0] for n in identities.strip("{}").split(", ")]


def test_presets_and_the_surveys_channels_use_builtin_namespaces_only() -> None:
    # a preset has no config to declare namespaces for it; the survey channels' defaults and the
    # survey page's link back to the invited customer are namespaces the core must know as well
    from hub.features.surveys.config import DEFAULT_NAMESPACE
    from hub.features.surveys.invitations import CUSTOMER_NAMESPACE
    from hub.mapping import list_presets, load_mapping_file
    from hub.mapping.targets import BUILTIN_NAMESPACES, known_namespaces

    for path in list_presets():
        load_mapping_file(path, namespaces=known_namespaces())
    assert {*DEFAULT_NAMESPACE.values(), CUSTOMER_NAMESPACE} <= set(BUILTIN_NAMESPACES)


@pytest.mark.parametrize(
    ("extra", "line", "hint"),
    [
        ("  order.amout: total\n", 5, "did you mean 'order.amount'?"),
        ("  customer.identity: {phone: p}\n", 5, "did you mean 'customer.identities'?"),
        ("  order.amount: {path: total, type: decimel}\n", 5, "did you mean 'decimal'?"),
        ("  order.amount: {path: total, defualt: 0}\n", 5, "did you mean 'default'?"),
        ("  org.store: {path: s, lookup: stors}\n", 5, "did you mean 'stores'?"),
        ("  order.items: {each: lines, fields: {skuu: s}}\n", 5, "did you mean 'sku'?"),
        ("  order.items: {each: lines, fields: {sku: s}, wen: x}\n", 5, "did you mean 'when'?"),
    ],
)
def test_unknown_names_in_a_mapping_get_a_suggestion(extra: str, line: int, hint: str) -> None:
    head = "name: t\nkind: transaction\nlookups: {stores: {'1': S1}}\nfields:\n  occurred_at: at\n"
    with pytest.raises(MappingError) as info:
        load_mapping_text(head + extra, "t.yaml")
    msg = str(info.value)
    assert msg.endswith(hint) and msg.startswith(f"t.yaml:{line + 1}:"), msg


def test_an_unknown_top_level_key_gets_a_suggestion() -> None:
    with pytest.raises(MappingError, match=r"t.yaml:3: lookup: .*did you mean 'lookups'\?"):
        load_mapping_text("name: t\nkind: transaction\nlookup: {a: {'1': x}}\nfields:\n  occurred_at: at\n", "t.yaml")


def test_an_unknown_preset_gets_a_suggestion(tmp_path) -> None:
    from hub.mapping import resolve_mapping_ref

    with pytest.raises(FileNotFoundError, match="did you mean 'retail_checkout'"):
        resolve_mapping_ref("retail_chekout", tmp_path)


def test_every_field_error_of_a_mapping_is_reported_at_once() -> None:
    from hub.errors import ConfigErrors
    from hub.mapping.targets import known_namespaces

    text = (
        "name: t\nkind: transaction\nbogus: 1\nfields:\n"  # 3: unknown top-level key
        "  occurred_at: {path: at, type: datetime}\n"
        "  order.amout: total\n"  # 6: unknown target
        "  order.amount: {path: t, type: decimal, default: abc}\n"  # 7: bad default
        "  order.items:\n    each: lines\n    fields:\n"
        "      skuu: s\n"  # 11: unknown item field
        "      qty: {path: q, type: datetime}\n"  # 12: impossible coercion
        "  customer.identities: {emial: e, phone: {path: p, lookup: nope}}\n"  # 13: namespace, lookup
    )
    with pytest.raises(MappingError) as info:
        load_mapping_text(text, "t.yaml", namespaces=known_namespaces())
    assert isinstance(info.value, ConfigErrors)
    where = [(e.line, e.key) for e in info.value.errors]
    assert where == [
        (3, "bogus"),
        (6, "fields.order.amout"),
        (7, "fields.order.amount.default"),
        (11, "fields.order.items.fields.skuu"),
        (12, "fields.order.items.fields.qty.type"),
        (13, "fields.customer.identities.emial"),
        (13, "fields.customer.identities.phone.lookup"),
    ], str(info.value)
