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


def run_one(url: str, n: int, batch: int) -> dict:
    from hub.connector import RawRecord
    from hub.ingest import Ingestor
    from hub.mapping import load_mapping_file, preset_path
    from hub.store import Store

    store = Store(url)
    store.migrate()
    mapping = load_mapping_file(preset_path("retail_checkout"))  # type: ignore[arg-type]
    ing = Ingestor(store, b"bench-secret")
    buf: list[RawRecord] = []
    stored = 0
    t0 = time.perf_counter()
    for i, rec in enumerate(records(n)):
        buf.append(RawRecord("pos", rec["receipt_no"], rec))
        if len(buf) == batch:
            stored += ing.ingest("pos", mapping, buf, {"offset": i}).stored
            buf = []
    if buf:
        stored += ing.ingest("pos", mapping, buf, {"offset": n}).stored
    seconds = time.perf_counter() - t0
    store.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "stored": stored,
        "seconds": round(seconds, 2),
        "events_per_s": round(stored / seconds),
        "peak_rss_mb": round(rss_mb),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.records, args.batch)))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.records} checkouts x 3 items, batches of {args.batch}"
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if backend == "sqlite":
            tmp = tempfile.mkdtemp()
            results = _child(f"sqlite:///{tmp}/bench.db", args)
        else:
            from hub.testing import temporary_postgres_database

            with temporary_postgres_database() as url:
                results = _child(url, args)
        print(
            f"{backend:10s}: {results['events_per_s']:>7,} events/s  ({results['stored']:,} stored in "
            f"{results['seconds']}s), peak RSS {results['peak_rss_mb']} MB"
        )


def _child(url: str, args: argparse.Namespace) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, "--records", str(args.records), "--batch", str(args.batch)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
