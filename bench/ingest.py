"""Ingest throughput: synthetic checkouts (3 items each) through mapping + identity + store.

    python bench/ingest.py [--records 200000] [--batch 2000] [--backend sqlite|postgresql|both]

Each backend runs in its own process so that its peak RSS is its own. PostgreSQL uses a throwaway
database on 127.0.0.1:5432. Prints events/s and peak RSS per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CATS = ["10", "11", "20", "30", "40", "50", "60"]


def records(n: int) -> Iterator[dict]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        member = i % 50_000
        yield {
            "receipt_no": f"R{i:09d}",
            "status": "PAID",
            "paid_at": (start + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S"),
            "store": {"code": f"S{i % 200:03d}", "name": "门店", "region": "华东", "district": "上海一区"},
            "cashier": f"E{i % 17:02d}",
            "total": f"{(i % 997) / 10 + 3:.2f}",
            "pay_method": "wechat",
            "member": {"number": f"M{member:07d}", "mobile": f"138{member:08d}", "level": "gold"},
            "items": [
                {
                    "sku": f"{(i * 7 + k) % 5000:06d}",
                    "name": "商品",
                    "cat": CATS[(i + k) % len(CATS)],
                    "qty": 1 + k,
                    "price": f"{(k + 1) * 3.5:.2f}",
                }
                for k in range(3)
            ],
        }


def run_one(url: str, n: int, batch: int, sequential: bool = False) -> dict:
    import gc

    from hub.connector import Batch, RawRecord
    from hub.ingest import Ingestor
    from hub.mapping import load_mapping_file, preset_path
    from hub.store import Store

    gc.freeze()  # as cxhub's CLI does at start (cli.main)
    store = Store(url)
    store.migrate()
    mapping = load_mapping_file(preset_path("retail_checkout"))  # type: ignore[arg-type]
    ing = Ingestor(store, b"bench-secret")

    def batches():
        buf: list[RawRecord] = []
        for i, rec in enumerate(records(n)):
            buf.append(RawRecord("pos", rec["receipt_no"], rec))
            if len(buf) == batch:
                yield Batch(buf, {"offset": i})
                buf = []
        if buf:
            yield Batch(buf, {"offset": n})

    s0 = _server_cpu(store)
    t0 = time.perf_counter()
    c0 = time.process_time()
    if sequential:  # Ingestor.ingest per batch, the collector paused per batch only
        stored = sum(ing.ingest("pos", mapping, b.records, b.state).stored for b in batches())
    else:  # as a pull sync runs them (Ingestor.ingest_stream)
        stored = sum(r.stored for r in ing.ingest_stream("pos", mapping, batches()))
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    server = _server_cpu(store) - s0
    store.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "stored": stored,
        "seconds": round(seconds, 2),
        "events_per_s": round(stored / seconds),
        "cpu_us_per_event": round(cpu / max(stored, 1) * 1e6),
        "server_cpu_us_per_event": round(server / max(stored, 1) * 1e6) if server >= 0 else None,
        "peak_rss_mb": round(rss_mb),
    }


def _server_cpu(store) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds used so far by the PostgreSQL backends serving this database (same machine:
    read from /proc); -1 when not measurable (SQLite, or another machine)."""
    if store.is_sqlite:
        return -1.0
    from sqlalchemy import text

    with store.engine.connect() as conn:
        pids = [r[0] for r in conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))]
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return -1.0
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--sequential", action="store_true", help="Ingestor.ingest per batch (not the stream)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.records, args.batch, args.sequential)))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.records} checkouts x 3 items, batches of {args.batch}"
        + (", Ingestor.ingest per batch" if args.sequential else ", Ingestor.ingest_stream as cxhub sync runs it")
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if backend == "sqlite":
            tmp = tempfile.mkdtemp()
            r = _child(f"sqlite:///{tmp}/bench.db", args)
        else:
            from hub.testing import temporary_postgres_database

            with temporary_postgres_database() as url:
                r = _child(url, args)
        print(
            f"{backend:10s}: {r['events_per_s']:>7,} events/s  ({r['stored']:,} stored in "
            f"{r['seconds']}s; {r['cpu_us_per_event']} us CPU/event in cxhub"
            + (f", {r['server_cpu_us_per_event']} in PostgreSQL" if r.get("server_cpu_us_per_event") else "")
            + f"), peak RSS {r['peak_rss_mb']} MB"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (a busy machine slows every figure)")


def _child(url: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", url, "--records", str(args.records), "--batch", str(args.batch)]
    if args.sequential:
        cmd.append("--sequential")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
