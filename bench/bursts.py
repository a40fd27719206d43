"""Bursts of pushed records: the row path against the columnar path, by burst size.

    .venv/bin/python bench/bursts.py [--sizes 200,1000,3000,5000,10000] [--records 30000] [--rounds 3]

A burst is what one transaction of the webhook receiver's group commit (or of a JetStream ingest
worker) stores: records already parsed from their bodies, each with its own receipt time. For each
size, ``--records`` synthetic checkouts (bench/ingest.py's) are stored in bursts of that size into
a fresh PostgreSQL database on 127.0.0.1:5432, once through ``Ingestor.ingest`` (the row path) and
once through the columnar path (``BurstIngest`` with no minimum), in the same run, each in its own
process. Prints events/s and client CPU per event, medians of ``--rounds``, and the ratio:
``hub.columnar.bursts.COLUMNAR_MIN`` is set from where the columnar path starts to pay.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def child(url: str, size: int, n: int, columnar: bool) -> dict[str, float]:
    from ingest import records

    from hub.columnar.bursts import BurstIngest
    from hub.ingest import Ingestor
    from hub.mapping import load_mapping_file, preset_path
    from hub.sdk.connector import RawRecord, utcnow
    from hub.store import Store

    store = Store(url)
    store.migrate()
    mapping = load_mapping_file(preset_path("retail_checkout"))  # type: ignore[arg-type]
    ingest = BurstIngest(Ingestor(store, b"bench-secret"), columnar_min=1 if columnar else n + 1)
    checkouts = list(records(n))
    bursts = [
        [RawRecord("pos", r["receipt_no"], r, utcnow()) for r in checkouts[i : i + size]] for i in range(0, n, size)
    ]
    t0, c0 = time.perf_counter(), time.process_time()
    stored = sum(ingest.ingest("pos", mapping, b).stored for b in bursts)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    store.dispose()
    return {"events_per_s": stored / seconds, "cpu_us": cpu / stored * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,1000,3000,5000,10000")
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        url, size, n, columnar = args.child
        print(json.dumps(child(url, int(size), int(n), columnar == "1")))
        return
    from tests.kit.databases import temporary_postgres_database

    print(f"{args.records} checkouts x 3 items per run, PostgreSQL, {os.cpu_count()} cores, medians of {args.rounds}")
    print(f"{'burst':>7} | {'row ev/s':>9} {'µs CPU':>7} | {'columnar ev/s':>13} {'µs CPU':>7} | columnar / row")
    for size in (int(s) for s in args.sizes.split(",")):
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for columnar in (False, True):
                with temporary_postgres_database() as url:
                    cmd = [sys.executable, __file__, "--child", url, str(size), str(args.records), str(int(columnar))]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    runs[columnar].append(json.loads(out.strip().splitlines()[-1]))
        med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
        row, col = med[False], med[True]
        print(
            f"{size:>7,} | {row['events_per_s']:>9,.0f} {row['cpu_us']:>7.0f} | {col['events_per_s']:>13,.0f} "
            f"{col['cpu_us']:>7.0f} | {col['events_per_s'] / row['events_per_s']:.2f}x"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
