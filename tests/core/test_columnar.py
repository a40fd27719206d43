"""The vector compiler and the columnar pieces on their own: what compiles for columns and why
not, values equal to the row path's, flagged records, row batches as columns, touchpoint ids."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.columnar.engine import plan, touchpoint_ids
from hub.columnar.records import from_rows
from hub.columnar.vector import ArrowRecords, Unsupported, compile_vector, json_text
from hub.errors import RecordError
from hub.mapping import CompiledMapping, load_mapping_text
from hub.model import touchpoint_id
from hub.sdk.connector import Batch, RawRecord

MAPPING = """
name: t
kind: transaction
timezone: Asia/Shanghai
lookups:
  pay: {"1": wechat, "2": alipay}
fields:
  occurred_at: {path: paid_at, type: datetime, required: true}
  order.id: order_no
  order.amount: {path: total, type: decimal}
  order.items:
    each: lines
    fields:
      sku: sku
      qty: {path: qty, type: decimal, default: 1}
  org.store: {path: store, required: true}
  org.staff: {path: staff, type: str}
  customer.identities:
    member_id: member
  attributes.pay: {path: pay, lookup: pay}
"""


def _mapping(text: str = MAPPING) -> CompiledMapping:
    return load_mapping_text(text, "t")


def _records() -> ArrowRecords:
    table = pa.table(
        {
            "order_no": ["A", "B", "C", "D"],
            "paid_at": pa.array(
                [datetime(2026, 1, 1, 8), datetime(2026, 1, 1, 8, 0, 1, 250000), None, datetime(2026, 1, 2)],
                pa.timestamp("us"),
            ),
            "total": ["12.50", "007.5", "1.00", "x"],
            "store": ["S1", "S2", "S3", "S4"],
            "staff": pa.array([7, None, 9, 1], pa.int64()),
            "member": ["M1", "", None, "M4"],
            "pay": ["1", "2", "1", "9"],
        }
    )
    lines = pa.table(
        {"sku": ["k1", "k2", None], "qty": ["2.000", None, "1.5"], "__row": pa.array([0, 0, 1], pa.int32())}
    )
    return ArrowRecords(table, {"lines": lines}, numeric=frozenset({"total", "lines.qty"}))


def test_values_match_the_row_path_and_odd_records_are_flagged() -> None:
    m = _mapping()
    vm = compile_vector(m)
    records = _records()
    mapped = vm.map(records)
    # C has no paid_at (required), D has a bad total and a lookup miss: the row path decides them
    assert mapped.status.to_list() == ["ok", "ok", "row", "row"]
    received = datetime(2026, 3, 1, tzinfo=UTC)
    for i in (0, 1):
        payload = records.payload(i)
        ev = m.apply(payload, source="s", external_id=payload["order_no"], received_at=received)
        assert ev is not None
        expected = orjson.loads(ev.model_dump_json())
        doc = orjson.loads(
            "{" + mapped.head[i] + ',"received_at":"x","customer":{"identities":[],"customer_id":null' + mapped.tail[i]
        )
        for key in ("kind", "channel", "occurred_at", "org", "order", "attributes"):
            assert doc[key] == expected[key], key
    # the decimal that is not canonical ("007.5") came through the row path's coercion: "7.5"
    assert orjson.loads("{" + mapped.head[1] + "}")["kind"] == "transaction"
    assert '"amount":"7.5"' in mapped.tail[1]
    # a blank identity is none; the other is its plain value (hashed later for sensitive namespaces)
    assert mapped.identities[0][1].to_list()[:2] == ["M1", None]


def test_why_a_mapping_keeps_the_row_path() -> None:
    review = load_mapping_text(
        "name: r\nkind: review\nfields:\n  occurred_at: {path: at, type: datetime}\n  feedback.rating: {path: stars, type: decimal}\n",
        "r",
    )
    with pytest.raises(Unsupported, match="feedback"):
        compile_vector(review)

    class Sql:
        kind = "sql"
        columnar = True

    class Feed:
        kind = "http_feed"

    m = _mapping()
    assert plan(Sql, None, m, keep_raw=False)[1] == "columnar"
    assert "one at a time" in plan(Feed, None, m, keep_raw=False)[1]
    assert "keep_raw_payloads" in plan(Sql, None, m, keep_raw=True)[1]


def test_row_batches_become_columns_unless_a_column_mixes_types() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    good = Batch(
        [
            RawRecord("s", "1", {"order_no": "1", "total": Decimal("1.50"), "lines": [{"sku": "a"}]}, now),
            RawRecord("s", "2", {"order_no": "2", "total": None, "lines": []}, now),
        ],
        {"cursor": 1},
    )
    cols = from_rows(good, ["lines"])
    assert cols is not None
    assert cols.table["total"].to_pylist() == ["1.50", None]
    assert "total" in cols.numeric
    assert cols.children["lines"]["__row"].to_pylist() == [0]
    mixed = Batch(
        [RawRecord("s", "1", {"total": "1"}, now), RawRecord("s", "2", {"total": 2}, now)],
        {},
    )
    assert from_rows(mixed, []) is None


def test_touchpoint_ids_are_the_models() -> None:
    ids = [str(i) for i in range(300)] + ["订单-1", "a\x1fb", " "]
    assert touchpoint_ids("pos", ids).to_list() == [touchpoint_id("pos", e) for e in ids]


def test_a_template_is_rendered_per_record(tmp_path: Path) -> None:
    m = load_mapping_text(
        "name: t2\nkind: other\nfields:\n  occurred_at: {path: at, type: datetime}\n"
        "  attributes.label: {template: '{a}-{b}'}\n",
        "t2",
    )
    vm = compile_vector(m)
    table = pa.table({"at": pa.array([datetime(2026, 1, 1)], pa.timestamp("us")), "a": ["x"], "b": pa.array([3])})
    mapped = vm.map(ArrowRecords(table))
    assert mapped.status.to_list() == ["ok"]
    assert '"attributes":{"label":"x-3"}' in mapped.tail[0]


def test_a_phone_number_in_a_text_attribute_goes_to_the_row_path() -> None:
    """The row path masks a phone number inside free text and seals it beside the touchpoint; the
    vector path writes attributes as they are, so such a record is the row path's to decide."""
    m = _mapping(MAPPING + "  attributes.note: note\n")
    table = pa.table(
        {
            "order_no": ["A", "B", "C"],
            "paid_at": pa.array([datetime(2026, 1, 1, 8)] * 3, pa.timestamp("us")),
            "total": ["1.00", "2.00", "3.00"],
            "store": ["S1", "S1", "S1"],
            "staff": pa.array([1, 2, 3], pa.int64()),
            "member": ["M1", "M2", "M3"],
            "pay": ["1", "1", "1"],
            "note": ["请回电 138-1234-5678 不对，是13812345678", "order 2026010112345678901", "送到前台"],
        }
    )
    lines = pa.table(
        {"sku": pa.array([], pa.string()), "qty": pa.array([], pa.string()), "__row": pa.array([], pa.int32())}
    )
    mapped = compile_vector(m).map(ArrowRecords(table, {"lines": lines}, numeric=frozenset({"total"})))
    # a mobile number: the row path; a longer run of digits (an order number) is none
    assert mapped.status.to_list() == ["row", "ok", "ok"]


def _absent_mapping() -> CompiledMapping:
    return _mapping(
        MAPPING
        + "  order.currency: {path: currency, default: CNY}\n"
        + "  attributes.channel_code: {path: meta.code}\n"
        + "  attributes.region: {path: region, required: true}\n"
    )


def test_a_key_no_record_holds_is_the_row_paths_value_once() -> None:
    """A SQL batch is its columns: a path to a column the query does not have is missing in every
    record, and takes the row path's value of a record without it (the default, or a flag when it
    is required), without building any record as a dict."""
    m = _absent_mapping()
    records = _records()
    records.opaque = frozenset()  # as a SQL batch: every key is a column
    mapped = compile_vector(m).map(records)
    assert records.payloads is None  # nothing was read record by record
    # region is required and no record has it: every record is the row path's to decide
    assert mapped.status.to_list() == ["row"] * 4
    without_required = _mapping(MAPPING + "  order.currency: {path: currency, default: CNY}\n")
    records = _records()
    records.opaque = frozenset()
    mapped = compile_vector(without_required).map(records)
    assert records.payloads is None
    assert mapped.status.to_list() == ["ok", "ok", "row", "row"]
    payload = records.payload(0)
    ev = without_required.apply(payload, source="s", external_id="A", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    assert ev is not None and ev.order is not None and ev.order.currency == "CNY"
    assert '"currency":"CNY"' in mapped.tail[0]


def test_a_key_held_outside_the_columns_is_read_per_record() -> None:
    """Row records keep nested objects out of the columns (``opaque``): a path into one is the row
    path's, record by record, and an unknown layout (``opaque`` None) is too."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    m = _mapping(MAPPING + "  attributes.tag: {path: meta, default: none}\n")
    batch = Batch(
        [
            RawRecord(
                "s",
                str(i),
                {
                    "order_no": str(i),
                    "paid_at": datetime(2026, 1, 1, 8),
                    "store": "S1",
                    "meta": {"k": i},
                    "lines": [],
                },
                now,
            )
            for i in range(2)
        ],
        {},
    )
    cols = from_rows(batch, ["lines"])
    assert cols is not None and "meta" in cols.opaque
    for layout in (cols.opaque, None):
        records = ArrowRecords(cols.table, cols.children, cols.present, cols.numeric, cols.payloads, layout)
        mapped = compile_vector(m).map(records)
        assert mapped.status.to_list() == ["ok", "ok"]
        for i, payload in enumerate(cols.payloads):
            ev = m.apply(payload, source="s", external_id=str(i), received_at=now)
            assert ev is not None and ev.attributes["tag"] == {"k": i}
            assert f'"tag":{{"k":{i}}}' in mapped.tail[i]


def test_json_text_is_jsons_own_string_literal() -> None:
    plain = ["S001", "门店 1", "", None]
    odd = ['a"b', "c\\d", "e\nf", "g\x01h", "tab\there", "\u2028", None]
    for values in (plain, odd, plain + odd):
        out = json_text(pl.Series(values, dtype=pl.String)).to_list()
        assert out == [None if v is None else orjson.dumps(v).decode() for v in values]


LOCAL_TIMES = st.sampled_from(
    [
        "2026-01-01 10:00:00",
        "2026-01-01T10:00:00",
        "2026-07-01 23:59:59.123",
        "2026-07-01T00:00:00.000001",
        "2026-03-08 02:30:00",  # New York: a time that does not exist
        "2026-11-01 01:30:00",  # New York: a time that happens twice
        "2024-02-29 12:00:00",
        "2026-02-29 12:00:00",  # no such day
        "2026-02-30 00:00:00",
        "1969-12-31 23:59:59.5",  # a fraction the plain form does not have: the row path parses
        "2026-01-01 10:00:00+08:00",
        " 2026-01-01 10:00:00",
        "2026-01-01",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(["Asia/Shanghai", "America/New_York", "UTC"]),
    times=st.lists(st.one_of(st.none(), LOCAL_TIMES), min_size=1, max_size=12),
    plain_only=st.booleans(),
)
def test_local_times_as_text_are_the_row_paths(zone: str, times: list[str | None], plain_only: bool) -> None:
    """ISO local times in a text column: parsed by Polars when every one has the plain form, and
    each record gets the row path's time (or is the row path's, when that one rejects it)."""
    if plain_only:  # a batch whose times all have the plain form takes the vectorised parse
        times = [t for t in times if t is None or (t[:1] != " " and len(t) > 10 and "+" not in t and ".5" not in t)]
    m = load_mapping_text(
        f"name: t\nkind: transaction\ntimezone: {zone}\n"
        "fields:\n  occurred_at: {path: at, type: datetime, required: true}\n  org.store: s\n",
        "t",
    )
    mapped = compile_vector(m).map(
        ArrowRecords(pa.table({"at": pa.array(times, pa.string()), "s": ["x"] * len(times)}))
    )
    if plain_only:  # mapped here, not handed to the row path
        assert all(
            mapped.status[i] == "ok" for i, t in enumerate(times) if t in ("2026-01-01 10:00:00", "2024-02-29 12:00:00")
        )
    received = datetime(2026, 3, 1, tzinfo=UTC)
    for i, t in enumerate(times):
        try:
            ev = m.apply({"at": t, "s": "x"}, source="s", external_id="e", received_at=received)
        except RecordError:
            assert mapped.status[i] == "row"  # rejected there: decided there, with its reason
            continue
        if mapped.status[i] == "row":
            continue  # the row path decides it, to the same result
        assert ev is not None
        expected = orjson.loads(ev.model_dump_json())["occurred_at"]
        assert orjson.loads("{" + mapped.head[i] + "}")["occurred_at"] == expected
        assert mapped.columns["occurred_at"][i] == ev.occurred_at


def test_items_are_each_records_in_element_order_whatever_order_the_table_holds() -> None:
    m = _mapping(
        "name: t\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime}\n  order.id: no\n"
        "  order.items:\n    each: lines\n    fields:\n      sku: sku\n"
    )
    table = pa.table({"no": ["A", "B", "C", "D"], "at": pa.array([datetime(2026, 1, 1, 8)] * 4, pa.timestamp("us"))})
    lines = pa.table({"sku": ["a1", "b1", "a2", "b2"], "__row": pa.array([0, 1, 0, 1], pa.int32())})
    present = pa.array([True, True, True, False])
    mapped = compile_vector(m).map(ArrowRecords(table, {"lines": lines}, present={"lines": present}))
    orders = [
        orjson.loads("{" + tail[tail.index('"order":') : tail.index(',"feedback"')] + "}")["order"]
        for tail in mapped.tail
    ]
    assert [[it["sku"] for it in o["items"]] if o["items"] is not None else None for o in orders] == [
        ["a1", "a2"],
        ["b1", "b2"],
        [],  # the list, empty
        [],  # no list at all: the field's default
    ]
    assert mapped.status.to_list() == ["ok"] * 4


@pytest.mark.parametrize("numeric", [True, False])
def test_decimals_as_text_print_as_the_row_path_prints_them(numeric: bool) -> None:
    """PostgreSQL numeric text and JSON amounts: the text itself when Decimal prints it back, the
    row path's form otherwise (0.0000001 prints as 1E-7)."""
    m = _mapping(
        "name: t\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime}\n  order.amount: {path: total, type: decimal}\n"
    )
    values = ["12.50", "0.000001", "0.0000001", "0.0000000", "-0.00000012", "10.0000001", None]
    table = pa.table({"at": pa.array([datetime(2026, 1, 1)] * len(values), pa.timestamp("us")), "total": values})
    mapped = compile_vector(m).map(ArrowRecords(table, numeric=frozenset({"total"} if numeric else ())))
    for i, v in enumerate(values):
        raw = Decimal(v) if numeric and v is not None else v
        ev = m.apply(
            {"at": datetime(2026, 1, 1), "total": raw},
            source="s",
            external_id="e",
            received_at=datetime(2026, 3, 1, tzinfo=UTC),
        )
        assert ev is not None
        expected = orjson.loads(ev.model_dump_json())["order"]
        got = orjson.loads(
            "{" + mapped.tail[i][mapped.tail[i].index('"order":') : mapped.tail[i].index(',"feedback"')] + "}"
        )["order"]
        assert got == expected, v


def test_a_constant_time_is_a_time_in_the_typed_column() -> None:
    m = _mapping(
        "name: t\nkind: transaction\nfields:\n  occurred_at: {const: '2026-01-01T08:00:00+08:00', type: datetime}\n  org.store: s\n"
    )
    mapped = compile_vector(m).map(ArrowRecords(pa.table({"s": ["x", "y"]}), opaque=frozenset()))
    assert mapped.status.to_list() == ["ok", "ok"]
    assert mapped.columns["occurred_at"].to_list() == [datetime(2026, 1, 1, tzinfo=UTC)] * 2
    assert mapped.columns["kind"].to_list() == ["transaction"] * 2
