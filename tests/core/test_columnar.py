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

from hub.columnar.engine import plan, touchpoint_ids
from hub.columnar.records import from_rows
from hub.columnar.vector import ArrowRecords, Unsupported, compile_vector, json_text
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
