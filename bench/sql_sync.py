"""SQL pull benchmark: POS orders + order lines in PostgreSQL -> a PostgreSQL cxhub store.

    .venv/bin/python bench/sql_sync.py [--orders 333334] [--batch-size 2000] [--mode children|joined]
                                       [--skip-dlt] [--no-floor] [--read-only [--repeat N]] [--profile FILE]

Builds a throwaway PostgreSQL source database (stores, members, categories, products, orders,
order_lines: 3 lines per order, ~1,000,000 lines by default) and measures, each in its own child
process so that peak RSS is per contender:

1. **cxhub**: the ``sql`` source (header query + ``children`` lines query, server-side cursor) through
   ``run_sync`` -> ``Ingestor.ingest`` (mapping ``pos_order``, identity resolution, one transaction
   per batch) into a PostgreSQL store. One touchpoint per order, with its 3 items.
2. **dlt** (``pip install -e .[bench]``): ``sql_table("order_lines")`` with
   ``dlt.sources.incremental("updated_at")``, default (SQLAlchemy) backend, postgres destination.
3. **raw COPY**: ``COPY (SELECT lines JOIN orders ...) TO STDOUT`` -> ``COPY ... FROM STDIN``, the
   physical limit of moving these rows between two PostgreSQL databases.
4. **store floor** (``bench/store_floor.py``): the rows cxhub stored (inbox, customers, identities,
   touchpoints) COPY'd as finished text into a fresh store, in the same batches: what PostgreSQL
   alone takes to write them, the ceiling of any ingest code storing them on this machine.

Figures are order lines per second (cxhub moves the same lines nested in orders), with the
contender's CPU time per line and peak RSS, then cxhub / COPY and cxhub / dlt.

``--read-only`` measures the ``sql`` source alone (no store, no dlt / COPY): every batch of a full
pass through ``SqlSource.read`` (cursor, rows -> dicts, lines nested under their order, ``RawRecord``
and cursor state per batch), in both modes: ``children`` (header query + one lines query per
batch) and ``joined`` (one joined query folded with ``group_by``), next to the floor, psycopg's
server-side cursor fetching the joined query as tuples and nothing else.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_SQL = """
CREATE TABLE stores (store_id int PRIMARY KEY, store_code text NOT NULL, name text, region text, brand text);
INSERT INTO stores SELECT g, 'ST' || lpad(g::text, 3, '0'), '门店' || g, (ARRAY['华东','华北','华南','西南'])[1 + g % 4], '好邻居'
  FROM generate_series(1, 50) g;
CREATE TABLE categories (category_id int PRIMARY KEY, code text, name text);
INSERT INTO categories SELECT g, lpad(g::text, 2, '0'),
  (ARRAY['生鲜','乳制品','家电','日用品','零食','酒水','粮油','冷冻','烘焙','个护'])[1 + g % 10] || g
  FROM generate_series(1, 20) g;
CREATE TABLE products (product_id int PRIMARY KEY, sku text, name text, category_id int REFERENCES categories);
INSERT INTO products SELECT g, '69' || lpad(g::text, 6, '0'), '商品' || g, 1 + g % 20 FROM generate_series(1, 2000) g;
CREATE TABLE members (member_id int PRIMARY KEY, member_no text NOT NULL, mobile text, level text);
INSERT INTO members SELECT g, 'M' || lpad(g::text, 8, '0'), '138' || lpad(g::text, 8, '0'),
  (ARRAY['normal','silver','gold'])[1 + g % 3] FROM generate_series(1, 50000) g;
CREATE TABLE orders AS
  SELECT g AS order_id, 'S' || lpad(g::text, 9, '0') AS order_no, 1 + g % 50 AS store_id,
         CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + g % 50000 END AS member_id, 100 + g % 40 AS staff_id,
         'T' || (g % 5) AS terminal_id, CASE WHEN g % 2 = 0 THEN 'wechat' ELSE 'alipay' END AS pay_method,
         'PAID'::text AS status, NULL::numeric(12, 2) AS total_amount,
         timestamp '2026-01-01' + g * interval '1 second' AS paid_at,
         timestamp '2026-01-01' + g * interval '1 second' AS updated_at
  FROM generate_series(1, :orders) g;
ALTER TABLE orders ADD PRIMARY KEY (order_id);
CREATE TABLE order_lines AS
  SELECT o.order_id * 10 + k AS line_id, o.order_id, k AS line_no, 1 + (o.order_id * 7 + k) % 2000 AS product_id,
         k::numeric(10, 3) AS qty, ((o.order_id * 7 + k) % 2000 + 0.5)::numeric(10, 2) AS unit_price,
         (k * ((o.order_id * 7 + k) % 2000 + 0.5))::numeric(12, 2) AS amount, o.updated_at
  FROM orders o, generate_series(1, 3) k;
ALTER TABLE order_lines ADD PRIMARY KEY (line_id);
UPDATE orders o SET total_amount = s.t FROM (SELECT order_id, sum(amount) t FROM order_lines GROUP BY 1) s
  WHERE s.order_id = o.order_id;
CREATE INDEX ix_orders_cursor ON orders (updated_at, order_id);
CREATE INDEX ix_lines_order ON order_lines (order_id);
CREATE INDEX ix_lines_updated ON order_lines (updated_at, line_id);
VACUUM ANALYZE;
"""

HEADER = """
SELECT o.order_id, o.order_no, o.paid_at, o.updated_at, o.total_amount, o.staff_id, o.terminal_id, o.pay_method,
       s.store_code, s.name AS store_name, s.region, s.brand, m.member_no, m.mobile, m.level AS member_level
FROM orders o JOIN stores s ON s.store_id = o.store_id LEFT JOIN members m ON m.member_id = o.member_id
WHERE o.status = 'PAID'
"""
LINES = """
SELECT l.order_id, l.line_no, p.sku, p.name AS product_name, c.name AS category_name,
       l.qty, l.unit_price, l.amount AS line_amount
FROM order_lines l JOIN products p ON p.product_id = l.product_id LEFT JOIN categories c ON c.category_id = p.category_id
"""
JOINED = """
SELECT o.order_id, o.order_no, o.paid_at, o.updated_at, o.total_amount, o.staff_id, o.terminal_id, o.pay_method,
       s.store_code, s.name AS store_name, s.region, s.brand, m.member_no, m.mobile, m.level AS member_level,
       l.line_no, p.sku, p.name AS product_name, c.name AS category_name,
       l.qty, l.unit_price, l.amount AS line_amount
FROM orders o JOIN stores s ON s.store_id = o.store_id LEFT JOIN members m ON m.member_id = o.member_id
LEFT JOIN order_lines l ON l.order_id = o.order_id
LEFT JOIN products p ON p.product_id = l.product_id LEFT JOIN categories c ON c.category_id = p.category_id
WHERE o.status = 'PAID'
"""
DEFAULT_MODE = "children"
LINE_COLUMNS = ["line_no", "sku", "product_name", "category_name", "qty", "unit_price", "line_amount"]
COPY_SELECT = """
SELECT l.line_id, l.order_id, l.line_no, p.sku, p.name, c.name, l.qty, l.unit_price, l.amount,
       o.order_no, o.paid_at, o.updated_at, s.store_code, m.member_no, m.mobile
FROM order_lines l JOIN orders o ON o.order_id = l.order_id JOIN stores s ON s.store_id = o.store_id
LEFT JOIN members m ON m.member_id = o.member_id JOIN products p ON p.product_id = l.product_id
LEFT JOIN categories c ON c.category_id = p.category_id
"""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _with_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(password=u.password or "unused").render_as_string(hide_password=False)


def seed(src: str, orders: int) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(_pg(src))
    with eng.begin() as conn:
        for stmt in SEED_SQL.split(";\n"):
            if stmt.strip() and not stmt.strip().startswith("VACUUM"):
                conn.execute(text(stmt), {"orders": orders} if ":orders" in stmt else {})
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        lines = int(conn.execute(text("SELECT count(*) FROM order_lines")).scalar_one())
    eng.dispose()
    return lines


def source_options(src: str, batch_size: int, mode: str) -> dict[str, Any]:
    """The ``sql`` source's options: header query + ``children`` lines, or one joined query folded
    with ``group_by``."""
    base: dict[str, Any] = {
        "url": src,
        "cursor": ["updated_at", "order_id"],
        "id": ["order_no"],
        "batch_size": batch_size,
        "count": False,
    }
    if mode == "children":
        return {
            **base,
            "query": HEADER,
            "children": {"lines": {"query": LINES, "key": "order_id", "order_by": ["line_no"]}},
        }
    return {**base, "query": JOINED, "group_by": ["order_id"], "line_columns": LINE_COLUMNS}


# ---------------------------------------------------------------- contenders (child processes)


def worker_read(src: str, batch_size: int, mode: str, profile: str | None) -> dict[str, Any]:
    """The ``sql`` source alone: every batch of a full pass, records and lines counted, no ingest."""
    from connectors.sql import SqlOptions, SqlSource

    source = SqlSource("pos", SqlOptions.model_validate(source_options(src, batch_size, mode)))
    gc.freeze()  # as `cxhub sync` does at start (cli.main)

    def run() -> tuple[int, int, int]:
        orders = lines = batches = 0
        for batch in source.read(None):
            batches += 1
            orders += len(batch.records)
            for rec in batch.records:
                lines += len(rec.payload["lines"])
        return orders, lines, batches

    t0, c0 = time.perf_counter(), time.process_time()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        orders, lines, batches = prof.runcall(run)
        prof.dump_stats(profile)
    else:
        orders, lines, batches = run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    source.close()
    return {
        "orders": orders,
        "rows": lines,
        "batches": batches,
        "seconds": seconds,
        "cpu": cpu,
        "rss_mb": _peak_rss_mb(),
    }


def worker_cxhub(src: str, dst: str, batch_size: int, mode: str, profile: str | None) -> dict[str, Any]:
    import yaml

    from hub.config import load_config
    from hub.runtime import Runtime
    from hub.sync import run_sync

    cfg = {
        "secret_key": "bench-secret",
        "store": {"url": dst, "pool_size": 2},
        "sources": {
            "pos": {
                "connector": "sql",
                "mapping": "pos_order",
                "options": source_options(src, batch_size, mode),
            }
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cxhub.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        rt = Runtime(load_config(path), features=())  # the pull path alone: no feature hooks
        rt.migrate()
        gc.freeze()  # as `cxhub sync` does at start (cli.main): the startup heap out of the collector's sight
        t0, c0 = time.perf_counter(), time.process_time()
        if profile:
            import cProfile

            prof = cProfile.Profile()
            result = prof.runcall(run_sync, rt, "pos")
            prof.dump_stats(profile)
        else:
            result = run_sync(rt, "pos")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        rt.close()
    from sqlalchemy import create_engine, text

    eng = create_engine(_pg(dst))
    with eng.connect() as conn:
        items = conn.execute(
            text("SELECT sum(jsonb_array_length(doc::jsonb->'order'->'items')) FROM touchpoints")
        ).scalar()
    eng.dispose()
    return {"orders": result.stored, "rows": int(items or 0), "seconds": seconds, "cpu": cpu, "rss_mb": _peak_rss_mb()}


def worker_dlt(src: str, dst: str) -> dict[str, Any]:
    import dlt
    from dlt.sources.sql_database import sql_table

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DLT_DATA_DIR"] = tmp
        table = sql_table(credentials=_pg(src), table="order_lines", incremental=dlt.sources.incremental("updated_at"))
        pipe = dlt.pipeline(
            pipeline_name="cxhub_bench",
            # dlt insists on a password; the local server trusts 127.0.0.1 and ignores it
            destination=dlt.destinations.postgres(credentials=_with_password(dst)),
            dataset_name="dlt_bench",
            pipelines_dir=tmp,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        pipe.run(table)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    from sqlalchemy import create_engine, text

    eng = create_engine(_pg(dst))
    with eng.connect() as conn:
        rows = int(conn.execute(text("SELECT count(*) FROM dlt_bench.order_lines")).scalar_one())
    eng.dispose()
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "rss_mb": _peak_rss_mb()}


def worker_copy(src: str, dst: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dst, autocommit=True) as out_conn:
        out_conn.execute(
            "CREATE TABLE raw_lines (line_id bigint, order_id bigint, line_no int, sku text, product_name text,"
            " category_name text, qty numeric, unit_price numeric, amount numeric, order_no text,"
            " paid_at timestamp, updated_at timestamp, store_code text, member_no text, mobile text)"
        )
    t0, c0 = time.perf_counter(), time.process_time()
    with psycopg.connect(src) as a, psycopg.connect(dst) as b:
        with (
            a.cursor().copy(f"COPY ({COPY_SELECT}) TO STDOUT") as reader,
            b.cursor().copy("COPY raw_lines FROM STDIN") as writer,
        ):
            for chunk in reader:
                writer.write(chunk)
        b.commit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with psycopg.connect(dst) as conn:
        row = conn.execute("SELECT count(*) FROM raw_lines").fetchone()
    return {"rows": int(row[0]) if row else 0, "seconds": seconds, "cpu": cpu, "rss_mb": _peak_rss_mb()}


def worker_fetch(src: str, batch_size: int) -> dict[str, Any]:
    """The floor of the read path: psycopg's server-side cursor over the joined query, tuples only."""
    import psycopg

    t0, c0 = time.perf_counter(), time.process_time()
    rows = 0
    with psycopg.connect(src) as conn, conn.cursor(name="cxhub_bench_fetch") as cur:
        cur.itersize = batch_size
        cur.execute(f"SELECT * FROM ({JOINED}) j ORDER BY j.updated_at, j.order_id, j.line_no")
        while part := cur.fetchmany(batch_size):
            rows += len(part)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "rss_mb": _peak_rss_mb()}


def _child(kind: str, src: str, dst: str, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, "--src", src, "--dst", dst, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _line(label: str, r: dict[str, Any]) -> str:
    out = f"  {label:14s} {r['rows']:>9,} lines in {r['seconds']:6.1f}s = {r['rows_per_s']:>9,.0f} lines/s"
    if "orders" in r:
        out += f", {r['orders'] / r['seconds'] if r['seconds'] else 0:>8,.0f} orders/s"
    if "cpu" in r:
        out += f", CPU {r['cpu']:5.1f}s ({r['cpu'] / max(r['rows'], 1) * 1e6:5.1f} us/line)"
    return out + f", peak RSS {r['rss_mb']:4.0f} MB"


def read_only(src: str, args: argparse.Namespace) -> None:
    """``--read-only``: the source alone (each mode ``--repeat`` times), and the bare fetch floor."""
    runs: list[tuple[str, list[str]]] = [("fetch", ["--worker-mode", "joined"])]
    modes = [args.mode] if args.mode else ["children", "joined"]
    runs += [("read", ["--worker-mode", m]) for m in modes]
    for _ in range(args.repeat):
        for kind, extra in runs:
            extra = [*extra, "--batch-size", str(args.batch_size)]
            if kind == "read" and args.profile:
                extra += ["--profile", f"{args.profile}.{extra[1]}"]
            r = _child(kind, src, "", extra)
            r["rows_per_s"] = r["rows"] / r["seconds"] if r["seconds"] else 0.0
            label = "psycopg fetch" if kind == "fetch" else f"read {extra[1]}"
            print(_line(label, r), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=333_334)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument(
        "--mode",
        choices=["children", "joined"],
        help="how the lines are read (default: " + DEFAULT_MODE + "; --read-only: both)",
    )
    ap.add_argument("--skip-dlt", action="store_true")
    ap.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the store floor (bench/store_floor.py: PostgreSQL writing cxhub's rows alone)",
    )
    ap.add_argument("--read-only", action="store_true", help="measure the sql source alone (no ingest, no dlt / COPY)")
    ap.add_argument("--repeat", type=int, default=1, help="with --read-only: runs of each mode")
    ap.add_argument("--profile", help="write a cProfile of the cxhub run (--read-only: of each read) to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-mode", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mode = args.worker_mode or DEFAULT_MODE
        fn = {"cxhub": lambda: worker_cxhub(args.src, args.dst, args.batch_size, mode, args.profile)}
        fn["read"] = lambda: worker_read(args.src, args.batch_size, mode, args.profile)
        fn["fetch"] = lambda: worker_fetch(args.src, args.batch_size)
        fn["dlt"] = lambda: worker_dlt(args.src, args.dst)
        fn["copy"] = lambda: worker_copy(args.src, args.dst)
        print(json.dumps(fn[args.worker]()))
        return

    from tests.kit.databases import temporary_postgres_database

    print(f"seeding {args.orders:,} orders x 3 lines into a throwaway PostgreSQL database ...", flush=True)
    with temporary_postgres_database() as src:
        t0 = time.perf_counter()
        lines = seed(src, args.orders)
        print(f"  {lines:,} order lines in {time.perf_counter() - t0:.1f}s", flush=True)
        if args.read_only:
            read_only(src, args)
            return
        results: dict[str, dict[str, Any]] = {}
        contenders = ["copy", "cxhub"] + ([] if args.skip_dlt else ["dlt"])
        for kind in contenders:
            with temporary_postgres_database() as dst:
                extra = ["--batch-size", str(args.batch_size), "--worker-mode", args.mode or DEFAULT_MODE]
                if kind == "cxhub" and args.profile:
                    extra += ["--profile", args.profile]
                r = _child(kind, src, dst, extra)
                if kind == "cxhub" and args.floor:
                    from store_floor import dump_rows, store_floor

                    floor = store_floor(dump_rows(dst), r["orders"], args.batch_size)
            r["rows_per_s"] = r["rows"] / r["seconds"] if r["seconds"] else 0.0
            results[kind] = r
            print(_line(kind, r) + (f" ({r['orders']:,} touchpoints)" if "orders" in r else ""), flush=True)
    cx = results["cxhub"]
    copy = results["copy"]
    print()
    print(f"cxhub sql sync : {cx['rows_per_s']:,.0f} lines/s, peak RSS {cx['rss_mb']:.0f} MB (target < 300 MB)")
    print(f"raw COPY       : {copy['rows_per_s']:,.0f} lines/s, peak RSS {copy['rss_mb']:.0f} MB")
    print(f"cxhub / COPY   : {cx['rows_per_s'] / copy['rows_per_s']:.3f}x (target >= 0.3x)")
    if args.floor:
        floor_lines = floor["events_per_s"] * cx["rows"] / max(cx["orders"], 1)
        print(
            f"store floor    : {floor_lines:,.0f} lines/s ({floor['events_per_s']:,.0f} touchpoints/s, "
            f"{floor['server_cpu_us_per_event']:.0f} us PostgreSQL CPU each): the rows cxhub stored, COPY'd as "
            "finished text into a fresh store (bench/store_floor.py)"
        )
        print(f"floor / COPY   : {floor_lines / copy['rows_per_s']:.3f}x: above this no ingest code can go here")
        print(f"cxhub / floor  : {cx['rows_per_s'] / floor_lines:.2f}x")
    if "dlt" in results:
        dlt = results["dlt"]
        print(f"dlt sql_table  : {dlt['rows_per_s']:,.0f} lines/s, peak RSS {dlt['rss_mb']:.0f} MB")
        print(f"cxhub / dlt    : {cx['rows_per_s'] / dlt['rows_per_s']:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
