"""The ``sql`` pull source against SQLite, the real PostgreSQL and the real MariaDB."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from kit.pull import (
    BASE_TIME,
    RuntimeFactory,
    SourceDb,
    create_pos,
    insert_orders,
    order_rows,
    pos_metadata,
    pos_options,
)
from sqlalchemy import func, select, text

from connectors.sql import SqlOptions, SqlSource, decode_cursor, encode_cursor
from hub.errors import PermanentError, RetriableError
from hub.runtime import Runtime
from hub.sdk.testing import ConnectorConformance
from hub.store.cursors import load_state
from hub.store.schema import inbox, quarantine, touchpoints
from hub.sync import SyncBusy, SyncRetry, run_sync, source_lock


class TestSqlConformance(ConnectorConformance):
    connector_kind = "sql"
    options = {"url": "sqlite:///x.db", "table": "orders", "cursor": ["updated_at", "id"]}


def _source(**opts: Any) -> dict[str, Any]:
    return {"pos": {"connector": "sql", "mapping": "pos_order", "options": opts}}


def _docs(rt: Runtime) -> dict[str, dict[str, Any]]:
    with rt.store.engine.connect() as conn:
        return {r.external_id: r.doc for r in conn.execute(select(touchpoints.c.external_id, touchpoints.c.doc))}


def _count(rt: Runtime, table: Any) -> int:
    with rt.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize("mode", ["children", "group_by"])
def test_incremental_sync_header_and_lines(source_db: SourceDb, make_runtime: RuntimeFactory, mode: str) -> None:
    eng = create_pos(source_db.url, source_db.schema)
    orders, lines = order_rows(1, 25)
    insert_orders(eng, orders, lines, source_db.schema)
    rt = make_runtime(_source(**pos_options(source_db.url, source_db.schema, mode=mode, batch_size=7)))
    progress: list[tuple[int, int | None]] = []
    r1 = run_sync(rt, "pos", on_batch=lambda n, t: progress.append((n, t)))
    assert (r1.read, r1.stored, r1.duplicates, r1.quarantined) == (25, 25, 0, 0)
    assert progress[0] == (0, 25) and progress[-1] == (25, 25) and len(progress) == 1 + 4  # 7+7+7+4
    docs = _docs(rt)
    ev = docs["S00000003"]
    assert ev["kind"] == "transaction" and ev["org"]["store"] == "BJ001" and ev["org"]["staff"] == "103"
    assert [i["category"] for i in ev["order"]["items"]] == ["日用品", "生鲜", "乳制品"]
    assert sum(float(i["amount"]) for i in ev["order"]["items"]) == float(ev["order"]["amount"])
    assert {i["namespace"] for i in ev["customer"]["identities"]} == {"member_id", "phone"}
    assert ev["occurred_at"] == (BASE_TIME + timedelta(seconds=3) - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # nothing new: nothing read
    assert run_sync(rt, "pos").read == 0
    # new orders and one changed order (same id: a duplicate, not a second touchpoint)
    more, more_lines = order_rows(26, 5)
    insert_orders(eng, more, more_lines, source_db.schema)
    t = pos_metadata(source_db.schema).tables[(f"{source_db.schema}." if source_db.schema else "") + "orders"]
    with eng.begin() as conn:
        conn.execute(t.update().where(t.c.order_id == 2).values(updated_at=BASE_TIME + timedelta(hours=1)))
    r2 = run_sync(rt, "pos")
    assert (r2.read, r2.stored, r2.duplicates) == (6, 5, 1)
    # --full reads everything again; dedup absorbs it
    r3 = run_sync(rt, "pos", full=True)
    assert (r3.read, r3.stored, r3.duplicates) == (30, 0, 30)
    assert _count(rt, touchpoints) == 30
    eng.dispose()


def test_composite_cursor_ties_across_batches(source_db: SourceDb, make_runtime: RuntimeFactory) -> None:
    """Many rows share one updated_at: a single-column cursor would skip some; (updated_at, id) does not."""
    eng = create_pos(source_db.url, source_db.schema)
    orders, lines = order_rows(1, 10, same_time=True)
    insert_orders(eng, orders, lines, source_db.schema)
    rt = make_runtime(_source(**pos_options(source_db.url, source_db.schema, batch_size=3)))
    # stop after the first batch, as a crash would
    src = rt.pull_source("pos")
    batches = src.read(None)
    first = next(batches)
    rt.ingestor.ingest("pos", rt.mapping("pos"), first.records, first.state)
    batches.close()  # type: ignore[attr-defined]
    assert len(first.records) == 3
    r = run_sync(rt, "pos")
    assert (r.read, r.stored) == (7, 7)
    assert sorted(_docs(rt)) == [f"S{i:08d}" for i in range(1, 11)]
    eng.dispose()


def test_single_column_cursor_is_strict_greater(tmp_path: Any, make_runtime: RuntimeFactory) -> None:
    url = f"sqlite:///{tmp_path / 'pos.db'}"
    eng = create_pos(url)
    insert_orders(eng, *order_rows(1, 5))
    rt = make_runtime(_source(**pos_options(url, cursor=["updated_at"])))
    assert run_sync(rt, "pos").stored == 5
    assert run_sync(rt, "pos").read == 0  # the last row is not read again (strict >)
    eng.dispose()


@pytest.mark.parametrize("style", ["row", "expanded"])
def test_row_value_and_expanded_conditions_agree(source_db: SourceDb, make_runtime: RuntimeFactory, style: str) -> None:
    eng = create_pos(source_db.url, source_db.schema)
    orders, lines = order_rows(1, 12, same_time=True)
    orders += order_rows(13, 4)[0]
    lines += order_rows(13, 4)[1]
    insert_orders(eng, orders, lines, source_db.schema)
    opts = pos_options(source_db.url, source_db.schema, batch_size=5, cursor_style=style)
    rt = make_runtime(_source(**opts))
    src = rt.pull_source("pos")
    assert isinstance(src, SqlSource)
    sql, _ = src.build_select([BASE_TIME, 1])
    assert (" OR " in sql) == (style == "expanded")
    # resume from a cursor in the middle of the tie: exactly the rows after it
    state = {"cursor": encode_cursor([BASE_TIME, 5])}
    got = [r.external_id for b in src.read(state) for r in b.records]
    assert got == [f"S{i:08d}" for i in range(6, 17)]
    eng.dispose()


@pytest.mark.parametrize(("lookback", "expect"), [(None, 0), ("10m", 1)])
def test_lookback_rereads_late_commits(
    source_db: SourceDb, make_runtime: RuntimeFactory, lookback: str | None, expect: int
) -> None:
    eng = create_pos(source_db.url, source_db.schema)
    insert_orders(eng, *order_rows(1, 10), source_db.schema)
    opts = pos_options(source_db.url, source_db.schema, **({"lookback": lookback} if lookback else {}))
    rt = make_runtime(_source(**opts))
    assert run_sync(rt, "pos").stored == 10
    # committed after that sync, but stamped 5 s after the first order: behind the cursor
    insert_orders(eng, *order_rows(100, 1, at=BASE_TIME + timedelta(seconds=5), same_time=True), source_db.schema)
    r = run_sync(rt, "pos")
    assert r.stored == expect
    if lookback:
        assert r.duplicates == 10  # the window re-read; dedup absorbed it
    cursor = decode_cursor(load_state(rt.store, "pos")["cursor"])  # type: ignore[index]
    assert cursor[1] == 10  # the cursor never moves back
    eng.dispose()


def test_bad_rows_are_quarantined_and_the_sync_goes_on(source_db: SourceDb, make_runtime: RuntimeFactory) -> None:
    eng = create_pos(source_db.url, source_db.schema)
    orders, lines = order_rows(1, 6)
    orders[2]["total_amount"] = "12,3a"  # legacy text column with garbage
    orders[4]["order_no"] = None  # no usable id
    insert_orders(eng, orders, lines, source_db.schema)
    rt = make_runtime(_source(**pos_options(source_db.url, source_db.schema, batch_size=2)))
    r = run_sync(rt, "pos")
    assert (r.read, r.stored, r.quarantined) == (6, 4, 2)
    with rt.store.engine.connect() as conn:
        reasons = sorted(q.reason for q in conn.execute(select(quarantine.c.reason)))
        assert conn.execute(select(func.count()).select_from(inbox)).scalar_one() == 5
    assert any("order.amount" in x and "12,3a" in x for x in reasons)
    assert any("id column(s) ['order_no'] empty" in x for x in reasons)
    eng.dispose()


def test_table_mode_and_pg_store(pg_store: Any, make_runtime: RuntimeFactory, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'pos.db'}"
    eng = create_pos(url)
    sources = {
        "members": {
            "connector": "sql",
            "mapping": "crm_member",
            "options": {"url": url, "table": "members", "cursor": "updated_at, member_id", "id": "member_no"},
        }
    }
    rt = make_runtime(sources, store_url=pg_store.url)
    r = run_sync(rt, "members")
    assert (r.read, r.stored) == (20, 20)
    docs = _docs(rt)
    assert docs["M000003"]["kind"] == "member" and docs["M000003"]["customer"]["member_level"] == "gold"
    eng.dispose()


def test_options_are_checked() -> None:
    base = {"url": "sqlite://", "cursor": ["updated_at", "order_id"]}
    with pytest.raises(ValueError, match="exactly one of table or query"):
        SqlOptions.model_validate(base)
    with pytest.raises(ValueError, match="must be part of the cursor"):
        SqlOptions.model_validate({**base, "table": "t", "group_by": ["order_no"], "line_columns": ["sku"]})
    with pytest.raises(ValueError, match="line_columns"):
        SqlOptions.model_validate({**base, "table": "t", "group_by": ["order_id"]})
    opts = SqlOptions.model_validate({**base, "table": "t", "lookback": "10m"})
    assert opts.lookback == 600
    assert "sqlite" not in repr(opts)  # the URL (with its password) is a secret


def test_bad_sql_is_permanent_and_names_the_source(tmp_path: Any, make_runtime: RuntimeFactory) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:5432/nowhere_{tmp_path.name[:5]}"
    rt = make_runtime(_source(url=url, table="orders", cursor=["updated_at"]))
    with pytest.raises(RetriableError) as info:
        run_sync(rt, "pos", retry=SyncRetry(attempts=2), sleep=_no_sleep)
    assert "pos" in str(info.value) and "hunter2" not in str(info.value) and "***" in str(info.value)
    url2 = f"sqlite:///{tmp_path / 'pos.db'}"
    create_pos(url2).dispose()
    rt2 = make_runtime(_source(url=url2, query="SELECT * FROM no_such_table", cursor=["updated_at"]))
    calls: list[float] = []
    with pytest.raises(PermanentError, match="no such table"):
        run_sync(rt2, "pos", sleep=calls.append)
    assert calls == []  # not retried


def test_dropped_connection_is_retried_and_resumes(pg_url: str, make_runtime: RuntimeFactory) -> None:
    """The reading PostgreSQL backend is killed mid-stream: the sync waits, resumes after the last
    committed batch and ends with every order exactly once."""
    import uuid

    schema = f"pos_{uuid.uuid4().hex[:8]}"
    eng = create_pos(pg_url, schema)
    insert_orders(eng, *order_rows(1, 60), schema)
    opts = pos_options(pg_url, schema, batch_size=10, init_sql=["SET application_name = 'cxhub_test_read'"])
    rt = make_runtime(_source(**opts))
    killed: list[int] = []

    def on_batch(read: int, total: int | None) -> None:
        if read == 20 and not killed:
            with eng.begin() as conn:
                q = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cxhub_test_read'"
                killed.extend(r[0] for r in conn.execute(text(q)))

    waits: list[float] = []
    r = run_sync(rt, "pos", on_batch=on_batch, retry=SyncRetry(attempts=3, base=0.5), sleep=waits.append)
    assert killed and any(killed)
    assert waits == [0.5]
    assert _count(rt, touchpoints) == 60 and sorted(_docs(rt)) == [f"S{i:08d}" for i in range(1, 61)]
    assert r.stored == 60 and r.duplicates <= 10
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_one_run_per_source(
    kind: str, request: pytest.FixtureRequest, make_runtime: RuntimeFactory, tmp_path: Any
) -> None:
    store_url = None if kind == "sqlite" else request.getfixturevalue("pg_store").url
    url = f"sqlite:///{tmp_path / 'pos.db'}"
    create_pos(url).dispose()
    rt = make_runtime(_source(**pos_options(url)), store_url=store_url)  # type: ignore[arg-type]
    with source_lock(rt.store, "pos"):
        with pytest.raises(SyncBusy, match="another sync"):
            run_sync(rt, "pos")
        with source_lock(rt.store, "other"):  # other sources are independent
            pass
    assert run_sync(rt, "pos").read == 0  # released


def test_children_are_fetched_per_batch_in_chunks(
    tmp_path: Any, make_runtime: RuntimeFactory, monkeypatch: Any
) -> None:
    import connectors.sql.source as sqlmod

    monkeypatch.setattr(sqlmod, "_IN_CHUNK", 4)
    url = f"sqlite:///{tmp_path / 'pos.db'}"
    eng = create_pos(url)
    insert_orders(eng, *order_rows(1, 9))
    rt = make_runtime(_source(**pos_options(url, batch_size=9)))
    run_sync(rt, "pos")
    assert all(len(d["order"]["items"]) == 3 for d in _docs(rt).values())
    eng.dispose()


def test_streams_with_server_side_cursor(
    pg_url: str, make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL rows come from a named (server-side) cursor, one FETCH of ``batch_size`` rows per
    batch: the first batch is ready after one fetch, not after the table."""
    import uuid

    import psycopg

    schema = f"pos_{uuid.uuid4().hex[:8]}"
    eng = create_pos(pg_url, schema)
    insert_orders(eng, *order_rows(1, 80), schema)
    opts = pos_options(pg_url, schema, batch_size=10, count=False)
    rt = make_runtime(_source(**opts))
    src = rt.pull_source("pos")
    assert isinstance(src, SqlSource)
    fetches: list[tuple[str, int, int]] = []
    real_fetchmany = psycopg.ServerCursor.fetchmany

    def fetchmany(cur: psycopg.ServerCursor[Any], size: int = 0) -> list[Any]:
        rows = real_fetchmany(cur, size)
        fetches.append((cur.name, size, len(rows)))
        return rows

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", fetchmany)
    batches = src.read(None)
    first = next(batches)
    assert [r.external_id for r in first.records] == [f"S{i:08d}" for i in range(1, 11)]
    assert all(len(r.payload["lines"]) == 3 for r in first.records)
    assert fetches == [("cxhub_sql_read", 10, 10)]
    second = next(batches)
    assert [r.external_id for r in second.records] == [f"S{i:08d}" for i in range(11, 21)]
    assert fetches == [("cxhub_sql_read", 10, 10)] * 2
    batches.close()  # type: ignore[attr-defined]
    r = run_sync(rt, "pos")
    assert (r.read, r.stored) == (80, 80)
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


@pytest.mark.parametrize("mode", ["children", "group_by"])
def test_orders_without_lines_get_an_empty_list(source_db: SourceDb, make_runtime: RuntimeFactory, mode: str) -> None:
    eng = create_pos(source_db.url, source_db.schema)
    orders, lines = order_rows(1, 6)
    insert_orders(eng, orders, [ln for ln in lines if ln["order_id"] % 2], source_db.schema)  # even orders: none
    rt = make_runtime(_source(**pos_options(source_db.url, source_db.schema, mode=mode, batch_size=4)))
    src = rt.pull_source("pos")
    got = {r.external_id: r.payload["lines"] for b in src.read(None) for r in b.records}
    assert [len(got[f"S{i:08d}"]) for i in range(1, 7)] == [3, 0, 3, 0, 3, 0]
    assert [ln["line_no"] for ln in got["S00000003"]] == [1, 2, 3]
    assert set(got["S00000001"][0]) == {
        "line_no",
        "sku",
        "product_name",
        "category_name",
        "qty",
        "unit_price",
        "line_amount",
    } | ({"order_id"} if mode == "children" else set())
    eng.dispose()


def test_postgresql_values_that_are_not_plain(pg_url: str, make_runtime: RuntimeFactory) -> None:
    """Columns psycopg loads as UUID / bytes / timedelta / time become JSON-friendly as before; a
    char(n) parent key and a '%' in the query work on the direct psycopg path."""
    import uuid
    from datetime import time as dtime
    from decimal import Decimal

    schema = f"odd_{uuid.uuid4().hex[:8]}"
    eng = create_pos(pg_url, schema)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    with eng.begin() as conn:
        conn.execute(
            text(
                f'CREATE TABLE "{schema}".docs (code char(6) PRIMARY KEY, u uuid, b bytea, raw bytea, i interval,'
                " t time, j jsonb, n numeric(8, 2), note text, updated_at timestamptz NOT NULL)"
            )
        )
        conn.execute(text(f'CREATE TABLE "{schema}".parts (code char(6), part int, u uuid)'))
        conn.execute(
            text(f'INSERT INTO "{schema}".docs VALUES (:c, :u, :b, :raw, :i, :t, CAST(:j AS jsonb), :n, :note, :at)'),
            [
                {
                    "c": f"D{k}",
                    "u": uid,
                    "b": "好".encode(),
                    "raw": b"\xff\x00",
                    "i": timedelta(minutes=k),
                    "t": dtime(9, k),
                    "j": '{"a": [1, 2]}',
                    "n": Decimal("1.50"),
                    "note": f"{k}% off",
                    "at": datetime(2026, 1, 1, 0, 0, k).astimezone(),
                }
                for k in (1, 2, 3)
            ],
        )
        conn.execute(
            text(f'INSERT INTO "{schema}".parts VALUES (:c, :p, :u)'),
            [{"c": "D1", "p": 1, "u": uid}, {"c": "D1", "p": 2, "u": None}, {"c": "D3", "p": 1, "u": None}],
        )
    opts = {
        "url": pg_url,
        "query": f"SELECT * FROM \"{schema}\".docs WHERE note LIKE '%off'",
        "cursor": ["updated_at", "code"],
        "id": ["code"],
        "batch_size": 2,
        "children": {"parts": {"query": f'SELECT * FROM "{schema}".parts', "key": "code", "order_by": ["part"]}},
    }
    rt = make_runtime(_source(**opts))
    src = rt.pull_source("pos")
    recs = {r.external_id: r.payload for b in src.read(None) for r in b.records}
    assert sorted(recs) == ["D1    ", "D2    ", "D3    "]
    d1 = recs["D1    "]
    assert d1["u"] == str(uid) and d1["b"] == "好" and d1["raw"] == {"$base64": "/wA="}
    assert d1["i"] == "0:01:00" and d1["t"] == "09:01:00" and d1["j"] == {"a": [1, 2]}
    assert d1["n"] == Decimal("1.50") and d1["note"] == "1% off" and isinstance(d1["updated_at"], datetime)
    assert d1["parts"] == [
        {"code": "D1    ", "part": 1, "u": str(uid)},
        {"code": "D1    ", "part": 2, "u": None},
    ]
    assert recs["D2    "]["parts"] == [] and [p["part"] for p in recs["D3    "]["parts"]] == [1]
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


@pytest.mark.parametrize("mode", ["children", "group_by"])
def test_other_postgresql_drivers_read_through_sqlalchemy(pg_url: str, make_runtime: RuntimeFactory, mode: str) -> None:
    """``postgresql+psycopg2://`` is not psycopg 3: it reads through SQLAlchemy, with the same records."""
    import uuid

    pytest.importorskip("psycopg2")
    schema = f"pos_{uuid.uuid4().hex[:8]}"
    eng = create_pos(pg_url, schema)
    insert_orders(eng, *order_rows(1, 7), schema)
    got = {}
    for url in (pg_url, pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)):
        rt = make_runtime(_source(**pos_options(url, schema, mode=mode, batch_size=3)))
        src = rt.pull_source("pos")
        assert isinstance(src, SqlSource) and src._psycopg == ("psycopg2" not in url)
        got[url] = [(b.state, [(r.external_id, r.payload) for r in b.records]) for b in src.read(None)]
    a, b = got.values()
    assert a == b and len(a) == 3 and len(a[0][1][0][1]["lines"]) == 3
    with eng.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


def test_group_by_columns_must_be_in_the_query(tmp_path: Any, make_runtime: RuntimeFactory) -> None:
    url = f"sqlite:///{tmp_path / 'pos.db'}"
    eng = create_pos(url)
    insert_orders(eng, *order_rows(1, 3))
    opts = pos_options(url, mode="group_by", line_columns=["line_no", "sku", "no_such_column"])
    rt = make_runtime(_source(**opts))
    with pytest.raises(PermanentError, match=r"line_columns \['no_such_column'\] are not columns of the query"):
        run_sync(rt, "pos")
    eng.dispose()


def test_cursor_state_roundtrip() -> None:
    from decimal import Decimal

    vals = [datetime(2026, 1, 2, 3, 4, 5, 6), 7, Decimal("1.50"), "x", None]
    assert decode_cursor(encode_cursor(vals)) == vals


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "rows"])
def test_queries_may_end_with_a_semicolon_and_a_comment(
    source_db: SourceDb, make_runtime: RuntimeFactory, columnar: bool
) -> None:
    """An integrator pastes a query from their SQL client: a closing semicolon, a comment on the
    last line. It is wrapped as a subquery all the same (counted, read, its children too)."""
    eng = create_pos(source_db.url, source_db.schema)
    insert_orders(eng, *order_rows(1, 5), source_db.schema)
    opts = pos_options(source_db.url, source_db.schema, batch_size=2, count=True, columnar=columnar)
    opts["query"] = opts["query"].rstrip() + ";  -- the orders; all of them\n"
    opts["children"]["lines"]["query"] += " -- their lines"
    rt = make_runtime(_source(**opts))
    result = run_sync(rt, "pos")
    assert (result.read, result.stored) == (5, 5)
    assert all(len(d["order"]["items"]) == 3 for d in _docs(rt).values())
    eng.dispose()


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "rows"])
def test_a_null_cursor_is_never_read_and_never_stops_the_source(
    source_db: SourceDb, make_runtime: RuntimeFactory, columnar: bool
) -> None:
    """A row whose cursor is NULL sorts last: read on the first pass, its NULL would become the
    committed cursor and nothing would ever compare greater. It is left out on every pass."""
    eng = create_pos(source_db.url, source_db.schema)
    insert_orders(eng, *order_rows(1, 4), source_db.schema)
    opts = pos_options(source_db.url, source_db.schema, batch_size=2, columnar=columnar)
    opts["query"] = opts["query"].replace(
        "o.updated_at,", "CASE WHEN o.order_id = 2 THEN NULL ELSE o.updated_at END AS updated_at,"
    )
    rt = make_runtime(_source(**opts))
    assert (run_sync(rt, "pos").stored, run_sync(rt, "pos").read) == (3, 0)
    insert_orders(eng, *order_rows(5, 2), source_db.schema)
    assert run_sync(rt, "pos").stored == 2  # the source goes on after the NULL
    assert sorted(_docs(rt)) == ["S00000001", "S00000003", "S00000004", "S00000005", "S00000006"]
    eng.dispose()
