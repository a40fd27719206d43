"""SQL pull benchmark: POS orders + order lines in PostgreSQL -> a PostgreSQL cxhub store.

    .venv/bin/python bench/sql_sync.py [--orders 333334] [--batch-size 4000] [--rounds 3] [--row]
                                       [--incremental 10000] [--skip-dlt] [--mode children|joined]
                                       [--read-only [--repeat N]] [--profile FILE]

Builds a throwaway PostgreSQL source database (stores, members, categories, products, orders,
order_lines: 3 lines per order, ~1,000,000 lines by default) and measures, each in its own child
process so that peak RSS is per contender, ``--rounds`` times in turn (figures: medians):

1. **raw COPY** (the limit): ``COPY (SELECT lines JOIN orders ...) TO STDOUT`` -> ``COPY ... FROM
   STDIN``: moving these rows between two PostgreSQL databases and nothing else.
2. **cxhub** (columnar, the default for ``sql``): ``run_sync`` of the ``sql`` source (header query +
   ``children`` lines query), read by ADBC into Arrow, mapped by ``pos_order`` compiled for
   columns, identities hashed and resolved, one transaction per batch, into a PostgreSQL store.
   One touchpoint per order, with its 3 items.
3. **cxhub row path** (``--row``): the same with ``columnar: false``.
4. **dlt** (``pip install -e .[bench]``): ``sql_table("order_lines", backend="pyarrow")`` with
   ``dlt.sources.incremental("updated_at")``, postgres destination: what a dlt user picks for SQL.

Then the **incremental** sync: ``--incremental`` new orders (3 lines each) are added to the source,
and cxhub syncs again into the store it filled (dedup, identities against a store of 1M lines),
beside a raw COPY of just the new lines.

Printed per contender: lines per second, client CPU per line, **server CPU per line** (the
PostgreSQL backends serving the run's connections, sampled from /proc every 0.1 s) and peak RSS;
then the ratios cxhub / COPY and cxhub / dlt.

``--read-only`` measures the ``sql`` source's row read alone (no store, no dlt / COPY), in both
modes, next to psycopg's server-side cursor fetching the joined query as tuples.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
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


def worker_cxhub(
    src: str, dst: str, batch_size: int, mode: str, profile: str | None, columnar: bool = True
) -> dict[str, Any]:
    """A ``run_sync`` of the POS source into the store at ``dst`` (migrated here if new; a store
    filled by an earlier run syncs incrementally from its committed cursor)."""
    from datetime import UTC, datetime

    import yaml

    from hub.config import load_config
    from hub.runtime import Runtime
    from hub.sync import run_sync

    options = {**source_options(src, batch_size, mode), "columnar": columnar}
    cfg = {
        "secret_key": "bench-secret",
        "store": {"url": dst, "pool_size": 2},
        "sources": {"pos": {"connector": "sql", "mapping": "pos_order", "options": options}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cxhub.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        rt = Runtime(load_config(path), features=())  # the pull path alone: no feature hooks
        rt.migrate()
        if columnar:
            # the columnar engine's libraries (Polars, pyarrow, ADBC: ~0.4 s to import) are loaded
            # before the clock starts, as dlt's and psycopg's are for the peers: a long-running
            # `cxhub run` loads them once
            import adbc_driver_postgresql.dbapi  # noqa: F401

            import hub.columnar.engine  # noqa: F401
        gc.freeze()  # as `cxhub sync` does at start (cli.main): the startup heap out of the collector's sight
        started = datetime.now(UTC)
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
    # the lines stored are counted by the parent, once the server CPU of this run is measured
    return {
        "orders": result.stored,
        "started": started.isoformat(),
        "seconds": seconds,
        "cpu": cpu,
        "rss_mb": _peak_rss_mb(),
    }


def stored_lines(dst: str, since: str) -> int:
    """Order lines inside the touchpoints received since ``since`` (what a cxhub run stored)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(_pg(dst))
    with eng.connect() as conn:
        items = conn.execute(
            text("SELECT sum(json_array_length(doc::json->'order'->'items')) FROM touchpoints WHERE received_at >= :t"),
            {"t": datetime.fromisoformat(since)},
        ).scalar()
    eng.dispose()
    return int(items or 0)


def worker_dlt(src: str, dst: str) -> dict[str, Any]:
    """dlt's ``sql_table`` with the pyarrow backend (what a dlt user picks for SQL)."""
    import dlt
    from dlt.sources.sql_database import sql_table

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DLT_DATA_DIR"] = tmp
        table = sql_table(
            credentials=_pg(src),
            table="order_lines",
            incremental=dlt.sources.incremental("updated_at"),
            backend="pyarrow",
        )
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


def worker_copy(src: str, dst: str, since: str | None = None) -> dict[str, Any]:
    """COPY the joined lines out of the source and into a plain table; ``since``: only the lines
    updated after it (the incremental pass, into the table the full pass filled)."""
    import psycopg

    with psycopg.connect(dst, autocommit=True) as out_conn:
        out_conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_lines (line_id bigint, order_id bigint, line_no int, sku text,"
            " product_name text, category_name text, qty numeric, unit_price numeric, amount numeric,"
            " order_no text, paid_at timestamp, updated_at timestamp, store_code text, member_no text, mobile text)"
        )
    where = f" WHERE l.updated_at > '{since}'" if since else ""
    t0, c0 = time.perf_counter(), time.process_time()
    with psycopg.connect(src) as a, psycopg.connect(dst) as b:
        with (
            a.cursor().copy(f"COPY ({COPY_SELECT}{where}) TO STDOUT") as reader,
            b.cursor().copy("COPY raw_lines FROM STDIN") as writer,
        ):
            for chunk in reader:
                writer.write(chunk)
        b.commit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with psycopg.connect(dst) as conn:
        row = conn.execute(
            "SELECT count(*) FROM raw_lines" + (f" WHERE updated_at > '{since}'" if since else "")
        ).fetchone()
    return {"rows": int(row[0]) if row else 0, "seconds": seconds, "cpu": cpu, "rss_mb": _peak_rss_mb()}


def add_orders(src: str, first: int, count: int) -> str:
    """``count`` new orders (3 lines each) after the last one; returns the cursor time before them."""
    import psycopg

    with psycopg.connect(src) as conn:
        row = conn.execute("SELECT max(updated_at) FROM orders").fetchone()
        assert row is not None
        since = str(row[0])
        conn.execute(
            "INSERT INTO orders SELECT g, 'S' || lpad(g::text, 9, '0'), 1 + g %% 50,"
            " CASE WHEN g %% 3 = 0 THEN NULL ELSE 1 + g %% 50000 END, 100 + g %% 40, 'T' || (g %% 5),"
            " CASE WHEN g %% 2 = 0 THEN 'wechat' ELSE 'alipay' END, 'PAID', NULL,"
            " timestamp '2026-01-01' + g * interval '1 second', timestamp '2026-01-01' + g * interval '1 second'"
            " FROM generate_series(%s::int, %s::int) g",
            (first, first + count - 1),
        )
        conn.execute(
            "INSERT INTO order_lines SELECT o.order_id * 10 + k, o.order_id, k, 1 + (o.order_id * 7 + k) %% 2000,"
            " k::numeric(10, 3), ((o.order_id * 7 + k) %% 2000 + 0.5)::numeric(10, 2),"
            " (k * ((o.order_id * 7 + k) %% 2000 + 0.5))::numeric(12, 2), o.updated_at"
            " FROM orders o, generate_series(1, 3) k WHERE o.order_id >= %s",
            (first,),
        )
        conn.execute(
            "UPDATE orders o SET total_amount = s.t FROM (SELECT order_id, sum(amount) t FROM order_lines"
            " WHERE order_id >= %s GROUP BY 1) s WHERE s.order_id = o.order_id",
            (first,),
        )
        conn.commit()
    return since


class ServerCpu:
    """CPU seconds of the PostgreSQL backends serving ``databases``: pids from pg_stat_activity,
    CPU from /proc/<pid>/stat, sampled every 0.1 s by a thread (a backend's last 0.1 s before it
    ends may be missed)."""

    def __init__(self, admin_url: str, databases: list[str]):
        import threading

        self._url = admin_url
        self._dbs = databases
        self._seen: dict[int, float] = {}
        self._base: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = datetime.now(UTC)

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT pid, backend_start >= %s FROM pg_stat_activity"
                    " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                    (self._started, self._dbs),
                ).fetchall()
                for pid, fresh in rows:
                    cpu = self._cpu(pid)
                    if cpu is not None:
                        self._base.setdefault(pid, 0.0 if fresh else cpu)
                        self._seen[pid] = cpu
                self._stop.wait(0.1)

    def __enter__(self) -> ServerCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        # a backend first seen mid-run started at 0 unless it existed before (then its base)
        return sum(self._seen[p] - self._base[p] for p in self._seen)


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
    """Run a contender in its own process, with the server CPU of the two databases' backends."""
    from tests.kit.databases import PG_ADMIN_URL

    cmd = [sys.executable, __file__, "--worker", kind, "--src", src, "--dst", dst, *extra]
    names = [u.rsplit("/", 1)[1] for u in (src, dst) if u]
    with ServerCpu(PG_ADMIN_URL, names) as server:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-4000:]}")
    r = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    r["server_cpu"] = server.seconds
    if "started" in r:
        r["rows"] = stored_lines(dst, r["started"])
    r["rows_per_s"] = r["rows"] / r["seconds"] if r["seconds"] else 0.0
    return r


def _line(label: str, r: dict[str, Any]) -> str:
    out = f"  {label:16s} {r['rows']:>9,} lines in {r['seconds']:6.1f}s = {r['rows_per_s']:>9,.0f} lines/s"
    if "cpu" in r:
        out += f", client CPU {r['cpu'] / max(r['rows'], 1) * 1e6:5.1f} us/line"
    if "server_cpu" in r:
        out += f", server CPU {r['server_cpu'] / max(r['rows'], 1) * 1e6:5.1f} us/line"
    return out + f", peak RSS {r['rss_mb']:4.0f} MB"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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
    ap.add_argument(
        "--batch-size",
        type=int,
        default=4_000,
        help="orders per batch (the sql source's batch_size; with two batches written at once, 4,000 "
        "keeps peak RSS under 350 MB, 5,000 gives ~355-365 MB)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="each contender this many times, in turn; medians")
    ap.add_argument("--incremental", type=int, default=10_000, help="new orders for the incremental pass (0: none)")
    ap.add_argument("--row", action="store_true", help="also measure cxhub's row path (columnar: false)")
    ap.add_argument(
        "--mode",
        choices=["children", "joined"],
        help="how the lines are read (default: " + DEFAULT_MODE + "; --read-only: both)",
    )
    ap.add_argument("--skip-dlt", action="store_true")
    ap.add_argument("--read-only", action="store_true", help="measure the sql source alone (no ingest, no dlt / COPY)")
    ap.add_argument("--repeat", type=int, default=1, help="with --read-only: runs of each mode")
    ap.add_argument("--profile", help="write a cProfile of the cxhub run (--read-only: of each read) to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-mode", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--since", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mode = args.worker_mode or DEFAULT_MODE
        fn = {"cxhub": lambda: worker_cxhub(args.src, args.dst, args.batch_size, mode, args.profile)}
        fn["cxhub-row"] = lambda: worker_cxhub(args.src, args.dst, args.batch_size, mode, args.profile, False)
        fn["read"] = lambda: worker_read(args.src, args.batch_size, mode, args.profile)
        fn["fetch"] = lambda: worker_fetch(args.src, args.batch_size)
        fn["dlt"] = lambda: worker_dlt(args.src, args.dst)
        fn["copy"] = lambda: worker_copy(args.src, args.dst, args.since)
        print(json.dumps(fn[args.worker]()))
        return

    from tests.kit.databases import temporary_postgres_database

    print(f"seeding {args.orders:,} orders x 3 lines into a throwaway PostgreSQL database ...", flush=True)
    load = os.getloadavg()
    print(f"  load average at the start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}", flush=True)
    with temporary_postgres_database() as src:
        t0 = time.perf_counter()
        lines = seed(src, args.orders)
        print(f"  {lines:,} order lines in {time.perf_counter() - t0:.1f}s", flush=True)
        if args.read_only:
            read_only(src, args)
            return
        contenders = ["copy", "cxhub"] + (["cxhub-row"] if args.row else []) + ([] if args.skip_dlt else ["dlt"])
        full: dict[str, list[dict[str, Any]]] = {k: [] for k in contenders}
        incr: dict[str, list[dict[str, Any]]] = {"copy": [], "cxhub": []}
        next_order = args.orders + 1
        for rnd in range(1, args.rounds + 1):
            print(f"round {rnd}/{args.rounds}", flush=True)
            with contextlib.ExitStack() as stack:
                dsts = {k: stack.enter_context(temporary_postgres_database()) for k in contenders}
                for kind in contenders:
                    extra = ["--batch-size", str(args.batch_size), "--worker-mode", args.mode or DEFAULT_MODE]
                    if kind == "cxhub" and args.profile:
                        extra += ["--profile", f"{args.profile}.{rnd}"]
                    r = _child(kind, src, dsts[kind], extra)
                    full[kind].append(r)
                    print(_line(kind, r) + (f" ({r['orders']:,} touchpoints)" if "orders" in r else ""), flush=True)
                if args.incremental:
                    since = add_orders(src, next_order, args.incremental)
                    next_order += args.incremental
                    for kind in ("copy", "cxhub"):
                        extra = ["--batch-size", str(args.batch_size), "--worker-mode", args.mode or DEFAULT_MODE]
                        if kind == "copy":
                            extra += ["--since", since]
                        r = _child(kind, src, dsts[kind], extra)
                        incr[kind].append(r)
                        print(_line(f"{kind} +incr", r), flush=True)
    print()
    print(f"medians of {args.rounds} round(s), machine load average at the start {load[0]:.2f}:")

    def med(kind: str, key: str, runs: dict[str, list[dict[str, Any]]] = full) -> float:
        return _median([r[key] for r in runs[kind]])

    def per_line(kind: str, key: str, runs: dict[str, list[dict[str, Any]]] = full) -> float:
        return _median([r[key] / max(r["rows"], 1) * 1e6 for r in runs[kind]])

    for kind in contenders:
        print(
            f"{kind:16s}: {med(kind, 'rows_per_s'):>9,.0f} lines/s, client CPU {per_line(kind, 'cpu'):.1f} us/line, "
            f"server CPU {per_line(kind, 'server_cpu'):.1f} us/line, peak RSS {med(kind, 'rss_mb'):.0f} MB"
        )
    cx, copy = med("cxhub", "rows_per_s"), med("copy", "rows_per_s")
    print(f"cxhub / COPY    : {cx / copy:.3f}x (target >= 0.35x); peak RSS target < 350 MB")
    if "dlt" in full:
        print(f"cxhub / dlt     : {cx / med('dlt', 'rows_per_s'):.2f}x (dlt backend=pyarrow; target >= 2.5x)")
    if "cxhub-row" in full:
        print(f"cxhub / row path: {cx / med('cxhub-row', 'rows_per_s'):.2f}x")
    if args.incremental:
        ci, ki = med("cxhub", "rows_per_s", incr), med("copy", "rows_per_s", incr)
        print(
            f"incremental     : cxhub {ci:,.0f} lines/s (client {per_line('cxhub', 'cpu', incr):.1f} us/line, "
            f"server {per_line('cxhub', 'server_cpu', incr):.1f} us/line), raw COPY {ki:,.0f} lines/s: "
            f"{ci / ki:.3f}x (target >= 0.25x)"
        )


if __name__ == "__main__":
    main()
