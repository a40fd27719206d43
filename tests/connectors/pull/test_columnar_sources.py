"""The sources' columnar side: the sql source's ADBC read on PostgreSQL (Arrow batches with the
row read's ids, rejects and cursor), and a jsonl drop ingested as columns storing what the row
path stores."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kit.pull import engine_for, reset_store, source_runtime
from sqlalchemy import text

from connectors.sql import SqlOptions, SqlSource
from hub.sdk import ColumnBatch
from hub.sync import run_sync


def synced(rt: Any, source: str) -> tuple[Any, dict[str, Any], list[Any]]:
    """One sync of ``source``: its result, the stored documents by external id, the quarantine."""
    result = run_sync(rt, source)
    with rt.store.engine.connect() as conn:
        docs = {}
        for ext, doc in conn.execute(text("SELECT external_id, doc FROM touchpoints")):
            docs[ext] = orjson.loads(doc) if isinstance(doc, str) else doc
        q = sorted(conn.execute(text("SELECT external_id, stage, reason FROM quarantine")).all())
    return result, docs, q


@pytest.mark.postgres
@pytest.mark.parametrize("hint", [None, 1], ids=["driver-batches-as-configured", "driver-batches-of-one-row"])
def test_the_sql_source_reads_postgresql_into_arrow(
    pg_url: str, hint: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if hint is not None:  # the driver's Arrow batches, whatever their size, make batches of batch_size records
        monkeypatch.setattr("connectors.sql.arrow.READ_HINT_BYTES", hint)
    eng = engine_for(pg_url)
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS col_orders, col_lines"))
        conn.execute(
            text(
                "CREATE TABLE col_orders (id int PRIMARY KEY, no text, total numeric(10,2), at timestamp NOT NULL);"
                "CREATE TABLE col_lines (order_id int, sku text, qty numeric(8,3));"
                "INSERT INTO col_orders SELECT g, CASE WHEN g = 3 THEN '' ELSE 'N' || g END, g * 1.5,"
                " timestamp '2026-01-01' + g * interval '1 minute' FROM generate_series(1, 7) g;"
                "INSERT INTO col_lines SELECT g, 'K' || g, 2 FROM generate_series(1, 7) g WHERE g % 2 = 1;"
            )
        )
    eng.dispose()
    options: dict[str, Any] = {
        "url": pg_url,
        "table": "col_orders",
        "cursor": ["at", "id"],
        "id": ["no"],
        "batch_size": 3,
        "children": {"lines": {"query": "SELECT * FROM col_lines", "key": "order_id", "parent_key": "id"}},
    }
    source = SqlSource("pos", SqlOptions.model_validate(options))
    try:
        arrow = list(source.read_arrow(None))
        rows = list(source.read(None))
    finally:
        source.close()
    assert all(isinstance(b, ColumnBatch) for b in arrow)
    assert [b.table.num_rows for b in arrow] == [3, 3, 1]
    # the same cursor states, ids and rejects (with their reason and payload) as the row read
    assert [b.state for b in arrow] == [b.state for b in rows]
    ids = [i for b in arrow for i in b.ids.to_pylist() if i is not None]
    assert ids == [r.external_id for b in rows for r in b.records]
    rejected = [(r.reason, json.dumps(r.payload, default=str)) for b in arrow for r in b.rejected]
    assert rejected == [(r.reason, json.dumps(r.payload, default=str)) for b in rows for r in b.rejected]
    assert rejected and "no usable id" in rejected[0][0]
    first = arrow[0]
    assert "total" in first.numeric and "lines.qty" in first.numeric
    assert first.children["lines"]["__row"].to_pylist() == [0, 2]  # orders 1 and 3 have a line


def test_a_jsonl_drop_ingested_as_columns_stores_what_the_row_path_stores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cxhub.columnar")
    drop = tmp_path / "drop"
    drop.mkdir()
    lines = [
        {
            "id": "c1",
            "at": "2026-01-01T10:00:00",
            "store": {"code": "S1"},
            "phone": "13800000001",
            "items": [{"sku": "a"}],
        },
        {
            "id": "c2",
            "at": "2026-01-01T10:00:00+08:00",
            "store": {"code": "S2"},
            "phone": "+86 138-0000-0001",
            "items": [],
        },
        {"id": "c3", "at": "not a time", "store": {"code": "S1"}, "items": [{"sku": "b", "qty": "2"}]},
        {"id": "c1", "at": "2026-01-02T10:00:00", "store": {"code": "S9"}, "items": []},
        {"id": "c4", "store": None},
        {"id": "c5", "at": "2026-01-03T10:00:00", "store": {"code": "S3", "tags": ["x"]}, "items": [{"sku": "c"}]},
    ]
    (drop / "a.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines) + "{bad\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: m\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime, required: true}\n"
        "  org.store: store.code\n  customer.identities: {phone: phone}\n  attributes.tags: store.tags\n"
        "  order.items:\n    each: items\n    fields:\n      sku: sku\n      qty: {path: qty, type: decimal, default: 1}\n"
    )
    out = []
    for columnar in (False, True):
        options = {"path": str(drop), "id_path": "id", "columnar": columnar}
        rt = source_runtime(tmp_path, f"sqlite:///{tmp_path / f'{columnar}.db'}", "drop", "jsonl", mapping, options)
        try:
            result, docs, q = synced(rt, "drop")
            for d in docs.values():
                d.pop("received_at")
                d["customer"].pop("customer_id")
            with rt.store.engine.connect() as conn:
                idents = sorted(conn.execute(text("SELECT namespace, value FROM identities")).all())
            out.append((result.summary(), docs, q, idents))
        finally:
            rt.close()
    assert out[0] == out[1]
    assert "records as columns, 2 of them decided by the row path" in caplog.text  # c3 and c4
    assert out[0][0]["stored"] == 3 and out[0][0]["quarantined"] == 3 and out[0][0]["duplicates"] == 1
    assert out[1][1]["c1"]["org"]["store"] == "S1" and out[1][1]["c5"]["attributes"]["tags"] == ["x"]


@pytest.mark.postgres
def test_two_batches_in_flight_share_new_customers_and_merge_as_the_row_path_does(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL two batches are written at once, each in its own transaction, committed in
    order. A customer the first creates that the second meets again (the second waits for the
    first's commit, then finds it), and a merge (the row path's resolver), end as the row path's
    store: the same customers, partitioned alike."""
    drop = tmp_path / "drop"
    drop.mkdir()
    lines = [
        {"id": "1", "at": "2026-01-01T10:00:00", "m": "M1", "p": "13800000001"},
        {"id": "2", "at": "2026-01-01T10:00:00", "m": "M2"},
        {"id": "3", "at": "2026-01-01T10:00:00", "m": "M1"},  # made by batch 1, which is committing
        {"id": "4", "at": "2026-01-01T10:00:00", "m": "M3"},
        {"id": "5", "at": "2026-01-01T10:00:00", "m": "M2", "p": "13800000001"},  # M1's phone: a merge
        {"id": "6", "at": "2026-01-01T10:00:00", "m": "M4"},
        {"id": "7", "at": "2026-01-01T10:00:00", "m": "M3", "p": "13900000009"},  # after the merge
        {"id": "8", "at": "2026-01-01T10:00:00", "m": "M1"},
    ]
    (drop / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: m\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime, required: true}\n"
        "  customer.identities: {member_id: m, phone: p}\n"
    )
    partitions = []
    for columnar, url in ((False, f"sqlite:///{tmp_path / 'row.db'}"), (True, pg_url)):
        options = {"path": str(drop), "id_path": "id", "batch_size": 2, "columnar": columnar}
        rt = source_runtime(tmp_path, url, "drop", "jsonl", mapping, options)
        try:
            reset_store(rt.store)
            assert run_sync(rt, "drop").stored == 8
            with rt.store.engine.connect() as conn:
                merged = dict(conn.execute(text("SELECT id, merged_into FROM customers")).all())

                groups: dict[str, set[str]] = {}
                for ext, cid in conn.execute(text("SELECT external_id, customer_id FROM touchpoints")).all():
                    while merged.get(cid):  # a merged customer's touchpoints belong to the survivor
                        cid = merged[cid]
                    groups.setdefault(cid, set()).add(ext)
            partitions.append(sorted(sorted(g) for g in groups.values()))
        finally:
            rt.close()
    assert partitions[0] == partitions[1]
    assert ["1", "2", "3", "5", "8"] in partitions[1]


def jsonl_runtime(tmp_path: Path, store_url: str, lines: list[dict[str, Any]], fields: str, **options: Any) -> Any:
    """A runtime syncing ``lines`` (a JSON-lines drop, ids in ``id``) into ``store_url``; the
    mapping takes ``occurred_at`` from ``at`` and then ``fields`` (YAML lines)."""
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: m\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime, required: true}\n" + fields
    )
    return source_runtime(
        tmp_path, store_url, "drop", "jsonl", mapping, {"path": str(drop), "id_path": "id", **options}
    )


def _drop_runtime(tmp_path: Path, pg_url: str, n: int) -> Any:
    """A runtime syncing ``n`` JSON lines (three members among them) in batches of two into ``pg_url``."""
    lines = [{"id": str(i), "at": "2026-01-01T10:00:00", "m": f"M{i % 3}"} for i in range(n)]
    rt = jsonl_runtime(tmp_path, pg_url, lines, "  customer.identities: {member_id: m}\n", batch_size=2)
    reset_store(rt.store)
    return rt


def _second_commit_raises(monkeypatch: pytest.MonkeyPatch, error: Exception) -> Callable[..., Any]:
    """Make the second batch's commit raise ``error`` before it writes; returns the real method."""
    from hub.columnar.engine import ColumnarIngest

    commit_in = ColumnarIngest._commit_in
    calls: list[int] = []

    def second_fails(self: ColumnarIngest, conn: Any, batch: Any, *rest: Any) -> Any:
        calls.append(batch.read)
        if len(calls) == 2:  # the second batch, written beside the first
            raise error
        return commit_in(self, conn, batch, *rest)

    monkeypatch.setattr(ColumnarIngest, "_commit_in", second_fails)
    return commit_in


@pytest.mark.postgres
def test_a_batch_that_waited_on_the_one_beside_it_is_committed_again_alone(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock wait that times out (or a deadlock) between the two batches in flight rolls back
    that batch and the one after it; both are committed again, in order, one at a time."""
    from psycopg import errors

    _second_commit_raises(monkeypatch, errors.LockNotAvailable("canceling statement due to lock timeout"))
    rt = _drop_runtime(tmp_path, pg_url, 8)
    try:
        assert run_sync(rt, "drop").stored == 8
        with rt.store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM touchpoints")).scalar_one() == 8
            assert conn.execute(text("SELECT count(DISTINCT customer_id) FROM touchpoints")).scalar_one() == 3
        assert run_sync(rt, "drop").stored == 0  # the cursor is the last batch's
    finally:
        rt.close()


@pytest.mark.postgres
def test_a_failed_commit_stops_the_sync_and_nothing_after_it_is_committed(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.columnar.engine import ColumnarIngest

    commit_in = _second_commit_raises(monkeypatch, RuntimeError("the store refused the batch"))
    rt = _drop_runtime(tmp_path, pg_url, 8)
    try:
        with pytest.raises(RuntimeError, match="refused"):
            run_sync(rt, "drop")
        with rt.store.engine.connect() as conn:
            stored = sorted(r[0] for r in conn.execute(text("SELECT external_id FROM touchpoints")))
        assert stored == ["0", "1"]  # the batch before; not the one after, written beside it
        monkeypatch.setattr(ColumnarIngest, "_commit_in", commit_in)
        assert run_sync(rt, "drop").stored == 6  # resumed from the first batch's cursor
    finally:
        rt.close()


@pytest.mark.postgres
def test_the_features_hooks_of_a_batch_see_the_batch_before_it_committed(pg_url: str, tmp_path: Path) -> None:
    """Two batches are written at once, but a batch's hooks (survey caps, cases) run only once the
    batch before it has committed: they see the store as a single writer would leave it."""
    rt = _drop_runtime(tmp_path, pg_url, 12)
    seen: list[tuple[int, int]] = []

    def hook(ctx: Any, events: list[Any]) -> None:
        with rt.store.engine.connect() as other:  # what is committed
            committed = other.execute(text("SELECT count(*) FROM touchpoints")).scalar_one()
        seen.append((min(int(e.external_id) for e in events), committed))

    rt.ingestor.hooks.append(hook)
    try:
        assert run_sync(rt, "drop").stored == 12
    finally:
        rt.close()
    assert sorted(seen) == [(first, first) for first in range(0, 12, 2)], seen


#: PostgreSQL types beyond the plain ones, as an unseen database has them: (type, a value)
ODD_TYPES = {
    "tags": ("text[]", "ARRAY['a','b']"),
    "ints": ("int[]", "ARRAY[1,2]"),
    "words": ("tsvector", "to_tsvector('simple', 'fast film')"),
    "price": ("money", "4.99"),
    "ip": ("inet", "'10.0.0.1'"),
    "net": ("cidr", "'10.1.0.0/16'"),
    "loc": ("point", "point(1,2)"),
    "picture": ("bytea", "'\\x00ff'::bytea"),
    "label": ("bytea", "convert_to('好','UTF8')"),
    "dur": ("interval", "interval '1 mon 2 days 03:00'"),
    "flags": ("bit(4)", "B'1010'"),
    "xdoc": ("xml", "'<a>1</a>'"),
    "uid": ("uuid", "'79d86a11-7667-4687-9bff-6296cace63c6'"),
    "opens": ("timetz", "'09:30+08'"),
    "mood": ("odd_mood", "'happy'"),
    "pair": ("odd_pair", "ROW(1,'x')::odd_pair"),
    "mac": ("macaddr", "'08:00:2b:01:02:03'"),
}


def _odd_tables(pg_url: str, extra: str = "") -> None:
    cols = ", ".join(f"{n} {t}" for n, (t, _) in ODD_TYPES.items())
    values = ", ".join(v for _, v in ODD_TYPES.values())
    eng = engine_for(pg_url)
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS odd_orders, odd_lines; DROP TYPE IF EXISTS odd_mood, odd_pair"))
        conn.execute(text("CREATE TYPE odd_mood AS ENUM ('sad', 'happy'); CREATE TYPE odd_pair AS (a int, b text)"))
        conn.execute(text(f"CREATE TABLE odd_orders (id int PRIMARY KEY, at timestamp NOT NULL, {cols}{extra})"))
        conn.execute(text(f"CREATE TABLE odd_lines (order_id int, {cols})"))
        conn.execute(text("INSERT INTO odd_orders (id, at) VALUES (2, '2026-01-02')"))  # every odd column null
        conn.execute(
            text(f"INSERT INTO odd_orders (id, at, {', '.join(ODD_TYPES)}) VALUES (1, '2026-01-01', {values})")
        )
        conn.execute(text(f"INSERT INTO odd_lines (order_id, {', '.join(ODD_TYPES)}) VALUES (1, {values})"))
        conn.execute(text("INSERT INTO odd_lines (order_id) VALUES (1)"))
    eng.dispose()


def _sync_both(tmp_path: Path, pg_url: str, mapping: Path) -> list[tuple[Any, ...]]:
    """``odd_orders`` (with its lines) synced by the columnar read and by the row read."""
    out = []
    for columnar in (True, False):
        options = {
            "url": pg_url,
            "table": "odd_orders",
            "cursor": ["at", "id"],
            "id": ["id"],
            "columnar": columnar,
            "children": {"lines": {"query": "SELECT * FROM odd_lines", "key": "order_id", "parent_key": "id"}},
        }
        rt = source_runtime(tmp_path, f"sqlite:///{tmp_path / f'{columnar}.db'}", "odd", "sql", mapping, options)
        try:
            result, docs, q = synced(rt, "odd")
            out.append(
                (result.summary(), {e: (d["attributes"], (d["order"] or {}).get("items")) for e, d in docs.items()}, q)
            )
        finally:
            rt.close()
    return out


@pytest.mark.postgres
def test_postgresql_types_beyond_the_plain_ones_arrive_as_the_row_read_gives_them(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Arrays, tsvector, money, inet, geometric, bytea, interval, bit, xml, uuid, timetz, enums,
    composites, macaddr, in the records and in their lines: the columnar read stores what the row
    read stores (the driver's binary forms are read as PostgreSQL's text), and a mapping without
    identities stores touchpoints without a customer."""
    caplog.set_level(logging.INFO, logger="cxhub.sql")
    _odd_tables(pg_url)
    mapping = tmp_path / "m.yaml"
    fields = "".join(f"  attributes.{n}: {n}\n" for n in ODD_TYPES)
    items = "      sku: uid\n      name: label\n      category: opens\n"
    mapping.write_text(
        "name: odd\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime, required: true}\n"
        + fields
        + "  attributes.word_text: {path: words, type: str}\n"
        + "  order.items:\n    each: lines\n    fields:\n"
        + items
    )
    columnar, row = _sync_both(tmp_path, pg_url, mapping)
    assert columnar == row
    assert "read through rows" not in caplog.text  # these stay on the columnar read
    summary, docs, quarantined = columnar
    assert summary["stored"] == 2 and not quarantined
    attrs, items_of_1 = docs["1"]
    assert attrs["tags"] == ["a", "b"] and attrs["ints"] == [1, 2] and attrs["word_text"] == "'fast':1 'film':2"
    assert attrs["price"] == "$4.99" and attrs["ip"] == "10.0.0.1" and attrs["net"] == "10.1.0.0/16"
    assert attrs["picture"] == {"$base64": "AP8="} and attrs["label"] == "好" and attrs["dur"] == "32 days, 3:00:00"
    assert attrs["uid"] == "79d86a11-7667-4687-9bff-6296cace63c6" and attrs["opens"] == "09:30:00+08:00"
    assert attrs["pair"] == "(1,x)" and attrs["loc"] == "(1,2)" and attrs["flags"] == "1010"
    [full] = [i for i in items_of_1 if i["sku"] is not None]
    assert full["sku"] == attrs["uid"] and full["category"] == "09:30:00+08:00" and full["name"] == "好"
    assert len(items_of_1) == 2
    assert docs["2"][0] == {}  # every odd column null: no attribute


@pytest.mark.postgres
def test_json_columns_are_parsed_as_the_row_read_parses_them(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """json / jsonb in the records and their lines: paths into them, whole values, ``when`` on
    them and quarantined records hold what the row read gives (parsed JSON, big integers kept)."""
    caplog.set_level(logging.INFO, logger="cxhub.sql")
    _odd_tables(pg_url, ", doc jsonb, raw json")
    eng = engine_for(pg_url)
    with eng.begin() as conn:
        conn.execute(text("ALTER TABLE odd_lines ADD COLUMN spec jsonb"))
        conn.execute(
            text("UPDATE odd_orders SET doc = CAST(:d AS jsonb), raw = CAST(:r AS json) WHERE id = 1"),
            {"d": '{"a": [1, 2.5], "b": {"c": "好"}}', "r": '[1, "x", null]'},
        )
        conn.execute(
            text(
                "INSERT INTO odd_orders (id, at, doc) VALUES (3, '2026-01-03', '{\"a\": \"skip\"}'),"
                " (4, '2026-01-04', '{\"a\": [1], \"bad\": true}');"
                'UPDATE odd_lines SET spec = \'{"size": "XL", "n": 18446744073709551617}\' WHERE uid IS NOT NULL'
            )
        )
    eng.dispose()
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: odd\nkind: transaction\nwhen: \"doc.a != 'skip'\"\nfields:\n"
        "  occurred_at: {path: at, type: datetime, required: true}\n"
        "  attributes.a: doc.a\n  attributes.c: doc.b.c\n  attributes.raw: raw\n  attributes.doc: doc\n"
        "  attributes.bad: {path: doc.bad, type: int}\n"
        "  order.items:\n    each: lines\n    fields:\n      name: spec.size\n      sku: uid\n"
        "      category: {path: spec.n, type: str}\n"
    )
    columnar, row = _sync_both(tmp_path, pg_url, mapping)
    assert columnar == row
    assert "read through rows" not in caplog.text
    summary, docs, quarantined = columnar
    assert summary["stored"] == 2 and summary["filtered"] == 1 and len(quarantined) == 1
    attrs, items = docs["1"]
    assert attrs["a"] == [1, 2.5] and attrs["c"] == "好" and attrs["raw"] == [1, "x", None]
    assert attrs["doc"] == {"a": [1, 2.5], "b": {"c": "好"}}
    [full] = [i for i in items if i["sku"] is not None]
    [empty] = [i for i in items if i["sku"] is None]
    assert full["name"] == "XL" and full["category"] == "18446744073709551617" and empty["name"] is None
    assert docs["2"] == ({}, [])


@pytest.mark.postgres
def test_range_columns_are_read_through_rows_and_say_so(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cxhub.sql")
    _odd_tables(pg_url, ", stay tstzrange DEFAULT tstzrange('2026-01-01', NULL)")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: odd\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime, required: true}\n"
        "  attributes.stay: stay\n  attributes.uid: uid\n"
    )
    columnar, row = _sync_both(tmp_path, pg_url, mapping)
    assert columnar == row
    assert "source odd is read through rows, not columns: stay (a range)" in caplog.text
    assert columnar[1]["1"][0] == {
        "stay": "[2026-01-01 00:00:00+00:00, None)",
        "uid": "79d86a11-7667-4687-9bff-6296cace63c6",
    }


def test_a_jsonl_drop_whose_mapping_names_no_customer_is_stored_as_columns(tmp_path: Path) -> None:
    lines = [{"id": f"e{i}", "at": f"2026-01-0{i}T10:00:00", "kind": "visit"} for i in range(1, 4)]
    rt = jsonl_runtime(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", lines, "  attributes.kind: kind\n")
    try:
        assert run_sync(rt, "drop").stored == 3
        with rt.store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM touchpoints WHERE customer_id IS NULL")).scalar() == 3
            assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 0
    finally:
        rt.close()


@pytest.mark.postgres
def test_a_query_with_two_columns_of_one_name_is_read_as_the_row_read_reads_it(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cxhub.sql")
    eng = engine_for(pg_url)
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS dup_a, dup_b"))
        conn.execute(text("CREATE TABLE dup_a (id int PRIMARY KEY, at timestamp NOT NULL, name text, bid int)"))
        conn.execute(text("CREATE TABLE dup_b (id int, name text)"))
        conn.execute(text("INSERT INTO dup_a VALUES (1, '2026-01-01', 'A1', 10), (2, '2026-01-02', 'A2', 20)"))
        conn.execute(text("INSERT INTO dup_b VALUES (10, 'B10'), (20, 'B20')"))
    eng.dispose()
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: dup\nkind: transaction\nfields:\n  occurred_at: {path: at, type: datetime, required: true}\n"
        "  attributes.name: name\n  attributes.id: id\n"
    )
    stored = []
    for columnar in (True, False):
        options = {
            "url": pg_url,
            "query": "SELECT dup_a.*, dup_b.* FROM dup_a JOIN dup_b ON dup_b.id = dup_a.bid",
            "cursor": ["at"],
            "id": ["name"],
            "columnar": columnar,
        }
        rt = source_runtime(tmp_path, f"sqlite:///{tmp_path / f'd{columnar}.db'}", "dup", "sql", mapping, options)
        try:
            assert run_sync(rt, "dup").stored == 2
            with rt.store.engine.connect() as conn:
                stored.append(sorted(conn.execute(text("SELECT external_id, doc FROM touchpoints")).all()))
        finally:
            rt.close()
    ext = [[e for e, _ in s] for s in stored]
    assert ext == [["B10", "B20"], ["B10", "B20"]]
    assert "columns of the same name (id, name): each record keeps the last" in caplog.text
