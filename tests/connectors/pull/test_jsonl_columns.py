"""A JSON-lines drop read as Arrow columns stores exactly what the line-by-line read stores.

Hypothesis writes drops of checkouts whose fields change type from line to line (ids as text,
integers, floats and booleans; totals as text, integral and fractional numbers; times that
pyarrow would read as timestamps; objects, empty objects, text where an object was; lists of
objects, of text, empty and missing; dotted keys, escapes, bad lines, NaN). Each drop is synced
twice into SQLite stores, with ``columnar: false`` and with the columnar read, and the stores are
compared: touchpoints, identities, customers as a partition, inbox statuses and quarantine rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kit.pull import reset_store, source_runtime, store_snapshot

from connectors.jsonl import JsonlOptions, JsonlSource, Lines
from connectors.jsonl_arrow import JsonlColumns, columns_of
from hub.columnar.records import from_nested
from hub.columnar.vector import vector_when
from hub.sdk.connector import utcnow
from hub.sdk.expressions import compile_expression
from hub.sync import run_sync

MAPPING = """
name: equiv_checkout
kind: transaction
timezone: Asia/Shanghai
when: "status != 'VOID' && !(total == `0`)"
lookups:
  category: {"10": 生鲜, "20": 乳制品}
fields:
  occurred_at: {path: paid_at, type: datetime, required: true}
  channel: {path: channel, default: pos}
  org.store: store.code
  org.store_name: store.name
  org.staff: cashier
  order.id: receipt_no
  order.amount: {path: total, type: decimal}
  order.currency: {path: currency, default: CNY}
  order.items:
    each: items
    fields:
      sku: sku
      category: {path: cat, lookup: category, default: 其他}
      qty: {path: qty, type: decimal, default: 1}
      price: {path: price, type: decimal}
  customer.identities:
    member_id: member.number
    phone: member.mobile
    openid: {path: member.openid, scope: member.appid}
  customer.member_level: member.level
  attributes.payment: pay_method
  attributes.note: note
  attributes.store_tags: store.tags
  attributes.lat: store.geo.lat
"""

IDS = st.sampled_from(["R1", "R2", "R3", "R 4", 7, 8, "", None, 1.5, True])
STATUS = st.sampled_from(["PAID", "VOID", None, "paid"])
TIMES = st.sampled_from(
    ["2026-01-01 10:00:00", "2026-03-08T02:30:00", "2026-01-01T00:00:00+08:00", "2026-01-01", "昨天", None]
)
TOTALS = st.sampled_from(["12.50", "0", 12.5, 0.25, 12, 0, None, "abc", 1e20])
STORE = st.one_of(
    st.none(),
    st.just({}),
    st.fixed_dictionaries(
        {"code": st.sampled_from(["S1", "S2", "带\t制表符", ""]), "name": st.sampled_from(["门店", None])},
        optional={"tags": st.lists(st.sampled_from(["x", "y"]), max_size=2), "geo": st.just({"lat": 1.5})},
    ),
)
MEMBER = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "number": st.sampled_from(["M1", "M2", None]),
            "mobile": st.sampled_from(["13800000001", "+86 139-0000-0002", None]),
        },
        optional={
            "openid": st.sampled_from(["o1", "o2"]),
            "appid": st.sampled_from(["wxA", "wxB"]),
            "level": st.sampled_from(["gold", None]),
        },
    ),
)
ITEM = st.fixed_dictionaries(
    {"sku": st.sampled_from(["k1", "k2", None])},
    optional={
        "qty": st.sampled_from([1, 2, "3", None, 1.5]),
        "price": st.sampled_from(["3.50", 3.5, None, "x"]),
        "cat": st.sampled_from(["10", "20", "99", None]),
    },
)
ITEMS = st.one_of(st.none(), st.lists(ITEM, max_size=3))
NOTES = st.sampled_from(["送到前台", 'say "hi"\\n', "line\nbreak", "请回电 13812345678", None])
RECORD = st.fixed_dictionaries(
    {"receipt_no": IDS, "status": STATUS, "paid_at": TIMES, "total": TOTALS},
    optional={
        "store": STORE,
        "cashier": st.sampled_from(["E1", 17, None]),
        "member": MEMBER,
        "items": ITEMS,
        "pay_method": st.sampled_from(["wechat", None]),
        "note": NOTES,
        "tags": st.lists(st.sampled_from(["a", "b"]), max_size=2),
        "channel": st.sampled_from(["pos", "app"]),
    },
)
ODD_LINES = st.sampled_from(
    [
        b"not json",
        b"[1, 2]",
        b'{"receipt_no": "R9", "paid_at": "2026-01-01 10:00:00", "total": NaN}',
        b'{"receipt_no": "R8", "a.b": 1, "paid_at": "2026-01-01 10:00:00"}',
        b'{"receipt_no": "R7", "receipt_no": "R6", "paid_at": "2026-01-01 10:00:00"}',
        b'{"receipt_no": "R5", "paid_at": "2026-01-01 10:00:00", "total": 123456789012345678901234}',
        b'{"receipt_no": "R4", "paid_at": "2026-01-01 10:00:00", "note": "\xff\xfe"}',
        b'\xef\xbb\xbf{"receipt_no": "R3", "paid_at": "2026-01-01 10:00:00"}',
        b'{"receipt_no": "R2", "paid_at": "2026-01-01 10:00:00"} {"receipt_no": "R1"}',
    ]
)
LINES = st.lists(st.one_of(RECORD.map(lambda r: orjson.dumps(r)), ODD_LINES), min_size=1, max_size=12)


def _sync(tmp_path: Path, drop: Path, mapping: Path, store: str, columnar: bool, batch_size: int) -> Any:
    options = {"path": str(drop), "id_path": "receipt_no", "batch_size": batch_size, "columnar": columnar}
    rt = source_runtime(tmp_path, store, "drop", "jsonl", mapping, options)
    try:
        reset_store(rt.store)
        run_sync(rt, "drop")
        return store_snapshot(rt.store)
    finally:
        rt.close()


def test_jsonl_columns_store_what_the_line_read_stores(tmp_path: Path) -> None:
    mapping = tmp_path / "equiv_checkout.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    drop = tmp_path / "drop"
    drop.mkdir()
    stores = (f"sqlite:///{tmp_path / 'row.db'}", f"sqlite:///{tmp_path / 'col.db'}")
    seen = {"columns": 0}

    @settings(
        max_examples=100,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(lines=LINES, batch_size=st.sampled_from([3, 50]))
    def check(lines: list[bytes], batch_size: int) -> None:
        (drop / "a.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
        source = JsonlSource("drop", JsonlOptions(path=str(drop), id_path="receipt_no", batch_size=batch_size))
        seen["columns"] += sum(isinstance(b, JsonlColumns) for b in source.read_arrow(None))
        row = _sync(tmp_path, drop, mapping, stores[0], False, batch_size)
        col = _sync(tmp_path, drop, mapping, stores[1], True, batch_size)
        assert col == row

    check()
    assert seen["columns"] > 0  # the examples did take the columnar read


def _lines(tmp_path: Path, text: bytes) -> Lines:
    src = JsonlSource("d", JsonlOptions(path=str(tmp_path), id_path="id"))
    chunk = Lines(src, utcnow())
    for i, line in enumerate(text.splitlines(keepends=True)):
        chunk.lines.append(line)
        chunk.refs.append(f"a.jsonl:{i}")
    return chunk


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b'{"id": "1", "q": 1}\n{"id": "2", "q": 1.5}\n', "an integer and a float in one field"),
        (b'{"id": "1", "q": 2.0}\n', "a float that may have been written as an integer"),
        (b'{"id": "1", "q": 100000000000000000000}\n', "an integer past 64 bits"),
        (b'{"id": "1", "q": "x"}\n{"id": "2", "q": 1}\n', "a text and a number in one field"),
        (b'{"id": "1"}\nnot json\n', "a line that is not JSON"),
        (b'{"id": "1", "a.b": 1}\n', "a dotted key"),
        (b'{"id": 1.5}\n', "an id that is a float"),
        (b'{"id": true}\n', "an id that is a boolean"),
        (b'{"id": "1", "x": "a\xffb"}\n', "bytes that are not UTF-8"),
        (b'\xef\xbb\xbf{"id": "1"}\n', "a byte-order mark, which the line read refuses"),
        (b'{"id": "1"} {"id": "2"}\n', "two objects on one line"),
    ],
)
def test_what_keeps_the_line_read(tmp_path: Path, text: bytes, why: str) -> None:
    assert columns_of(_lines(tmp_path, text), ("id",)) is None, why


def test_times_stay_text_and_ids_are_the_line_reads(tmp_path: Path) -> None:
    text = (
        b'{"id": "R7", "at": "2026-01-01 10:00:00", "s": {"code": "S1", "t": "2026-01-01T00:00:00+08:00"}, '
        b'"items": [{"sku": "a", "when": "2026-02-02"}]}\n'
        b'{"id": "", "at": null, "items": []}\n'
        b'{"at": "2026-01-02 10:00:00", "f": 0.5}\n'
    )
    cols = columns_of(_lines(tmp_path, text), ("id",))
    assert cols is not None
    assert cols.ids.to_pylist() == ["R7", None, None]
    assert [r.reason.split(": ", 1)[1] for r in cols.rejected] == ["id_path 'id' gives no usable id"] * 2
    assert [r.payload for r in cols.rejected] == [
        {"id": "", "at": None, "items": []},
        {"at": "2026-01-02 10:00:00", "f": 0.5},
    ]
    nested = from_nested(cols, ["items"])
    assert nested is not None
    assert nested.table["at"].to_pylist() == ["2026-01-01 10:00:00", None, "2026-01-02 10:00:00"]
    assert nested.table["s.t"].to_pylist() == ["2026-01-01T00:00:00+08:00", None, None]
    assert nested.children["items"].to_pylist() == [{"sku": "a", "when": "2026-02-02", "__row": 0}]
    assert nested.present["items"].to_pylist() == [True, True, False]
    assert "s" in nested.opaque
    numbered = columns_of(_lines(tmp_path, b'{"id": 7}\n{"id": -12}\n{"id": null}\n'), ("id",))
    assert numbered is not None and numbered.ids.to_pylist() == ["7", "-12", None]


WHEN_VALUES = [None, "PAID", "VOID", "", 0, 1, 2, 1.5, -3, True, False, "10", "a", "中"]
WHEN_EXPRESSIONS = [
    "status == 'PAID'",
    "status != 'VOID'",
    "status == `1`",
    "status == `true`",
    "status != `false`",
    "status > `1`",
    "status >= 'a'",
    "`1` < status",
    "status < `2` && status != `0`",
    "!(status == 'VOID') || status == `true`",
    "nested.code == 'PAID'",
    "missing == 'x'",
    "missing != 'x'",
]


@pytest.mark.parametrize("expression", WHEN_EXPRESSIONS)
def test_a_vector_when_decides_as_the_row_path(expression: str) -> None:
    """Per column type (one type a batch, as the columns hold them), the vector ``when`` keeps
    the records the row path's JMESPath keeps, or says it cannot (then records are asked one by one)."""
    getter = compile_expression(expression)
    by_type: dict[type, list[Any]] = {}
    for v in WHEN_VALUES:
        if v is not None:
            by_type.setdefault(type(v), []).append(v)
    for values in by_type.values():
        column = [*values, None]
        table = pa.table({"status": column, "nested.code": column})
        records = [{"status": v, "nested": {"code": v}} for v in column]
        try:
            expected = [bool(getter(r)) for r in records]
        except TypeError:
            expected = None  # a text ordered against a number: the row path flags those records
        got = vector_when(expression, table, frozenset({"nested"}))
        if got is None:
            continue
        assert expected is not None, (expression, column)
        assert got.to_list() == expected, (expression, column)
    assert vector_when("status == 'PAID'", pa.table({"status": ["PAID"]}), None) is not None
    assert vector_when("length(status) > `1`", pa.table({"status": ["PAID"]}), frozenset()) is None


def test_a_drop_reads_as_columns_in_one_pass(tmp_path: Path) -> None:
    """The default read of a well-formed drop: every batch as columns, no line parsed in Python."""
    drop = tmp_path / "d"
    drop.mkdir()
    with (drop / "a.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(25):
            fh.write(json.dumps({"id": f"R{i}", "total": "1.50", "items": [{"sku": "a"}]}) + "\n")
    src = JsonlSource("d", JsonlOptions(path=str(drop), id_path="id", batch_size=10))
    batches = [b for b in src.read_arrow(None) if isinstance(b, JsonlColumns)]
    assert [b.table.num_rows for b in batches] == [10, 10, 5]
    assert batches[-1].state == {"files": {"a.jsonl": (drop / "a.jsonl").stat().st_size}}
