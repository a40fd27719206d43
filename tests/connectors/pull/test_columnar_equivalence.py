"""The columnar path stores exactly what the row path stores: touchpoints, identities, customers
(as a partition of the touchpoints), inbox statuses and quarantine rows with their reasons.

Hypothesis generates source rows (nulls, local times in a zone with DST gaps and overlaps, bad
decimals, blank values, empty baskets, ids that repeat inside a batch and across syncs, phone
numbers written several ways) into a SQLite, PostgreSQL or MariaDB source. The same rows are
synced twice, once with ``columnar: false`` (the row path) into one store and once by the
columnar path into another; a second wave of rows and a lookback that re-reads the first wave
exercise dedup against stored keys. The stores are PostgreSQL (the COPY and staging-table
writes), and SQLite for the SQLite source.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kit.databases import temporary_postgres_database
from kit.pull import SourceDb, engine_for, reset_store, source_runtime, store_snapshot
from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, String, Table, text

from hub.store import Store
from hub.sync import run_sync

MAPPING = """
name: equiv_order
kind: transaction
channel: pos
timezone: America/New_York
lookups:
  pay: {"wx": wechat, "ali": alipay}
fields:
  occurred_at: {path: paid_at, type: datetime, required: true}
  order.id: order_no
  order.amount: {path: total, type: decimal}
  order.items:
    each: lines
    fields:
      sku: sku
      qty: {path: qty, type: decimal, default: 1}
      price: {path: price, type: decimal}
  org.store: {path: store_code, required: true}
  org.staff: {path: staff_id, type: str}
  customer.identities:
    member_id: member_no
    phone: mobile
    openid: {path: openid, scope: appid}
  attributes.pay: {path: pay, lookup: pay, default: other}
  attributes.terminal: terminal
"""

ORDER_NOS = st.sampled_from(["A1", "A2", "A3", "B1", "B2", "C 1", '"q"', "\\x", "", None])
TOTALS = st.sampled_from(["12.50", "0", "-3", "007.5", "1e3", "abc", "", " 8.10", "1,200.00", None])
MOBILES = st.sampled_from(["13800000001", "+86 138-0000-0001", "13900000002", "", None, "h:already"])
MEMBERS = st.sampled_from(["M1", "M2", "M3", None, ""])
STORES = st.sampled_from(["SH001", "BJ001", "", None, "带\t制表符"])
PAYS = st.sampled_from(["wx", "ali", "cash", None])
TERMINALS = st.sampled_from(["T1", "T2\nline", None, "终端"])
# America/New_York: 2026-03-08 02:30 does not exist, 2026-11-01 01:30 happens twice
TIMES = st.sampled_from(
    [
        datetime(2026, 3, 8, 2, 30),
        datetime(2026, 11, 1, 1, 30),
        datetime(2026, 6, 1, 12, 0, 0, 500000),
        datetime(2026, 1, 1, 0, 0),
        None,
    ]
)
LINE = st.fixed_dictionaries(
    {
        "sku": st.sampled_from(["S1", "S2", None, ""]),
        "qty": st.sampled_from(["1.000", "2.500", None]),
        "price": st.sampled_from(["9.90", "0.00", None]),
    }
)
ORDER = st.fixed_dictionaries(
    {
        "order_no": ORDER_NOS,
        "paid_at": TIMES,
        "total": TOTALS,
        "store_code": STORES,
        "staff_id": st.sampled_from([7, None]),
        "member_no": MEMBERS,
        "mobile": MOBILES,
        "pay": PAYS,
        "terminal": TERMINALS,
        "openid": st.sampled_from(["o1", "o2", None, ""]),
        "appid": st.sampled_from(["wxA", "wxB", None]),
        "lines": st.lists(LINE, max_size=3),
    }
)
WAVES = st.tuples(st.lists(ORDER, min_size=1, max_size=12), st.lists(ORDER, max_size=8))


def _tables(schema: str | None, suffix: str) -> tuple[MetaData, Table, Table]:
    md = MetaData(schema=schema)
    orders = Table(
        f"eq_orders_{suffix}",
        md,
        Column("order_id", Integer, primary_key=True, autoincrement=False),
        Column("order_no", String(16)),
        Column("paid_at", DateTime),
        Column("total", String(16)),
        Column("store_code", String(16)),
        Column("staff_id", Integer),
        Column("member_no", String(16)),
        Column("mobile", String(32)),
        Column("pay", String(8)),
        Column("terminal", String(16)),
        Column("openid", String(16)),
        Column("appid", String(16)),
        Column("updated_at", DateTime, nullable=False),
    )
    lines = Table(
        f"eq_lines_{suffix}",
        md,
        Column("line_id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, nullable=False),
        Column("sku", String(16)),
        Column("qty", Numeric(10, 3)),
        Column("price", Numeric(10, 2)),
    )
    return md, orders, lines


def _insert(db: SourceDb, orders: Table, lines: Table, wave: list[dict[str, Any]], first_id: int) -> None:
    eng = engine_for(db.url)
    base = datetime(2026, 5, 1, 8, 0)
    with eng.begin() as conn:
        for k, order in enumerate(wave):
            oid = first_id + k
            row = {c: order[c] for c in order if c != "lines"}
            conn.execute(orders.insert(), {**row, "order_id": oid, "updated_at": base + timedelta(minutes=oid)})
            for j, line in enumerate(order["lines"]):
                conn.execute(lines.insert(), {**line, "line_id": oid * 10 + j, "order_id": oid})
    eng.dispose()


@pytest.fixture(scope="module")
def pg_stores() -> Iterator[tuple[str, str]]:
    with temporary_postgres_database() as a, temporary_postgres_database() as b:
        for url in (a, b):
            s = Store(url)
            s.migrate()
            s.dispose()
        yield a, b


@pytest.mark.postgres
def test_row_and_columnar_paths_store_the_same(
    source_db: SourceDb, pg_stores: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cxhub.columnar")
    mapping = tmp_path / "equiv_order.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    stores = (
        (f"sqlite:///{tmp_path / 'row.db'}", f"sqlite:///{tmp_path / 'col.db'}")
        if source_db.dialect == "sqlite"
        else pg_stores
    )
    runs = {"n": 0}

    @settings(
        max_examples=10 if source_db.dialect != "sqlite" else 15,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure prints its example unshrunk
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(waves=WAVES, batch_size=st.sampled_from([2, 5, 50]))
    def check(waves: tuple[list[dict[str, Any]], list[dict[str, Any]]], batch_size: int) -> None:
        runs["n"] += 1
        suffix = uuid.uuid4().hex[:8]
        md, orders, lines = _tables(source_db.schema, suffix)
        eng = engine_for(source_db.url)
        with eng.begin() as conn:
            if source_db.schema:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{source_db.schema}"'))
            md.create_all(conn)
        eng.dispose()
        prefix = f'"{source_db.schema}".' if source_db.schema else ""
        q = "`" if source_db.dialect == "mariadb" else '"'
        options = {
            "url": source_db.url,
            "query": f"SELECT * FROM {prefix}{q}{orders.name}{q}",
            "cursor": ["updated_at", "order_id"],
            "id": ["order_no"],
            "batch_size": batch_size,
            "lookback": 86400,  # every sync re-reads what it read before: dedup against stored keys
            "children": {
                "lines": {
                    "query": f"SELECT * FROM {prefix}{q}{lines.name}{q}",
                    "key": "order_id",
                    "order_by": ["line_id"],
                }
            },
        }
        snaps = []
        try:
            for columnar, store_url in zip((False, True), stores, strict=True):
                rt = source_runtime(tmp_path, store_url, "pos", "sql", mapping, {**options, "columnar": columnar})
                try:
                    reset_store(rt.store)
                    if columnar:  # the waves are in the source already
                        run_sync(rt, "pos")
                    else:
                        _insert(source_db, orders, lines, waves[0], 1)
                        run_sync(rt, "pos")
                    snaps.append(None)
                finally:
                    rt.close()
            # second wave, then each path syncs again from its own committed state
            _insert(source_db, orders, lines, waves[1], 100)
            snaps = []
            for columnar, store_url in zip((False, True), stores, strict=True):
                rt = source_runtime(tmp_path, store_url, "pos", "sql", mapping, {**options, "columnar": columnar})
                try:
                    run_sync(rt, "pos")
                    snaps.append(store_snapshot(rt.store))
                finally:
                    rt.close()
        finally:
            eng = engine_for(source_db.url)
            with eng.begin() as conn:
                md.drop_all(conn)
            eng.dispose()
        row, col = snaps
        for key in row:
            assert col[key] == row[key], key

    check()
    assert runs["n"] > 0
    # the columnar path mapped batches itself (not only through the row path)
    assert "records as columns" in caplog.text
