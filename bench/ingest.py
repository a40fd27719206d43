"""Ingest throughput: synthetic checkouts (3 items each) through mapping + identity + store.

    python bench/ingest.py [--records 200000] [--batch 2000] [--backend sqlite|postgresql|both]
                           [--input jsonl|generator|push] [--concurrency 200] [--row] [--no-floor]

``--row``: the row path of the same code (the jsonl source with ``columnar: false``, its batches
parsed line by line and mapped record by record; pushes with bursts never taken as columns), to
compare the two paths in one run.

``--input push``: each checkout is one push, as the webhook receiver hands them to the store: its
JSON body parsed with orjson and submitted to the group-commit writer by one of ``--concurrency``
requests in flight on one event loop (the receiver's ``DirectTransport``), each awaiting its
commit. Bursts of at least ``hub.columnar.bursts.COLUMNAR_MIN`` records are stored as columns.

Each backend runs in its own process so that its peak RSS is its own. PostgreSQL uses a throwaway
database on 127.0.0.1:5432. Prints events/s and peak RSS per backend, and on PostgreSQL the store
floor (``bench/store_floor.py``): the rows this run stored, COPY'd again into a fresh store by
PostgreSQL alone, the ceiling of any ingest code writing them on this machine.
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


def stages(n: int = 5000, repeat: int = 3) -> dict[str, float]:
    """CPU per event (us) of the steps every record takes in Python before any database work,
    each timed alone on ``n`` checkouts with the collector off (as ingest runs), best of
    ``repeat``: parse the JSON line, build the document (mapping), validate it into the model,
    hash the identities, serialise the event."""
    import gc

    import orjson

    from hub.identity import IdentityResolver
    from hub.mapping import load_mapping_file, preset_path
    from hub.model import TouchpointEvent
    from hub.privacy import Vault

    mapping = load_mapping_file(preset_path("retail_checkout"))  # type: ignore[arg-type]
    lines = [orjson.dumps(r) for r in records(n)]
    resolver = IdentityResolver(Vault(b"bench-secret"))
    received = datetime.now(UTC)
    out: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        best, result = float("inf"), None
        for _ in range(repeat):
            c0 = time.process_time()
            result = fn()
            best = min(best, time.process_time() - c0)
        out[name] = best / n * 1e6
        return result

    was = gc.isenabled()
    gc.disable()
    try:
        payloads = timed("parse", lambda: [orjson.loads(line) for line in lines])
        docs = timed(
            "map",
            lambda: [
                mapping.build_doc(p, source="pos", external_id=p["receipt_no"], received_at=received) for p in payloads
            ],
        )
        events = timed("validate", lambda: [TouchpointEvent.model_validate(d) for d in docs])
        fresh = [[TouchpointEvent.model_validate(d) for d in docs] for _ in range(repeat)]
        timed("hash identities", lambda: [resolver.protect(e) for e in fresh.pop()])
        timed("serialise", lambda: [e.model_dump_json() for e in events])
    finally:
        if was:
            gc.enable()
    return out


def run_one(url: str, n: int, batch: int, sequential: bool = False, source: str = "jsonl", row: bool = False) -> dict:
    import gc

    if source == "jsonl":
        return _run_sync(url, n, batch, columnar=not row)
    if source == "push":
        return _run_push(url, n, batch, columnar=not row)
    from hub.ingest import Ingestor
    from hub.mapping import load_mapping_file, preset_path
    from hub.sdk.connector import Batch, RawRecord
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
    return _figures(stored, seconds, cpu, server)


def _run_sync(url: str, n: int, batch: int, columnar: bool = True) -> dict:
    """``cxhub sync pos`` of a JSON-lines drop of the checkouts, written before the clock starts:
    the jsonl connector reads and parses it, then mapping, identity and store as a sync runs them."""
    import gc

    import yaml

    from hub.config import load_config
    from hub.runtime import Runtime
    from hub.sync import run_sync

    with tempfile.TemporaryDirectory() as tmp:
        drop = Path(tmp) / "drop"
        drop.mkdir()
        with (drop / "pos.jsonl").open("w", encoding="utf-8") as fh:
            for rec in records(n):
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        cfg = {
            "secret_key": "bench-secret",
            "store": {"url": url, "pool_size": 2},
            "sources": {
                "pos": {
                    "connector": "jsonl",
                    "mapping": "retail_checkout",
                    "options": {"path": str(drop), "id_path": "receipt_no", "batch_size": batch, "columnar": columnar},
                }
            },
        }
        path = Path(tmp) / "cxhub.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        rt = Runtime(load_config(path), features=())  # ingest alone: no feature hooks
        rt.migrate()
        gc.freeze()  # as cxhub's CLI does at start (cli.main)
        s0 = _server_cpu(rt.store)
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_sync(rt, "pos")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        server = _server_cpu(rt.store) - s0
        rt.close()
    return _figures(result.stored, seconds, cpu, server)


def _run_push(url: str, n: int, concurrency: int, columnar: bool = True) -> dict:
    """Every checkout as one push through the group-commit writer, ``concurrency`` in flight."""
    import asyncio
    import gc

    import orjson

    from hub.group_commit import GroupCommitWriter
    from hub.ingest import Ingestor
    from hub.mapping import load_mapping_file, preset_path
    from hub.sdk.connector import RawRecord, utcnow
    from hub.store import Store

    bodies = [orjson.dumps(r) for r in records(n)]  # the requests' bodies, before the clock starts
    store = Store(url)
    store.migrate()
    mapping = load_mapping_file(preset_path("retail_checkout"))  # type: ignore[arg-type]
    writer = GroupCommitWriter(Ingestor(store, b"bench-secret"), max_batch=concurrency)
    if not columnar:
        writer.bursts.columnar_min = n + 1
    gc.freeze()  # as cxhub's CLI does at start (cli.main)

    async def request(queue: list[bytes]) -> None:
        while queue:
            payload = orjson.loads(queue.pop())
            rec = RawRecord("pos", payload["receipt_no"], payload, utcnow())
            await asyncio.wrap_future(writer.submit("pos", mapping, [rec]))

    async def drive() -> None:
        queue = bodies[::-1]
        await asyncio.gather(*(request(queue) for _ in range(concurrency)))

    s0 = _server_cpu(store)
    t0, c0 = time.perf_counter(), time.process_time()
    asyncio.run(drive())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    server = _server_cpu(store) - s0
    writer.close()
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM touchpoints").scalar_one()
    store.dispose()
    return _figures(stored, seconds, cpu, server)


def _figures(stored: int, seconds: float, cpu: float, server: float) -> dict:
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
    from store_floor import backend_cpu

    with store.engine.connect() as conn:
        return backend_cpu(conn.connection.driver_connection)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument(
        "--input",
        choices=["jsonl", "generator", "push"],
        default="jsonl",
        help="jsonl: `cxhub sync` of a JSON-lines drop written before the clock starts (default); "
        "generator: records built in Python while the clock runs, fed to the Ingestor directly; "
        "push: one push per checkout through the receiver's group-commit writer",
    )
    ap.add_argument("--concurrency", type=int, default=200, help="with --input push: requests in flight")
    ap.add_argument("--sequential", action="store_true", help="with --input generator: Ingestor.ingest per batch")
    ap.add_argument(
        "--row",
        action="store_true",
        help="the row path: with --input jsonl the source's columnar: false; with --input push no burst as columns",
    )
    ap.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the store floor (bench/store_floor.py: PostgreSQL writing the same rows alone)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "stages":
        print(json.dumps(stages()))
        return
    if args.child:
        batch = args.concurrency if args.input == "push" else args.batch
        print(json.dumps(run_one(args.child, args.records, batch, args.sequential, args.input, args.row)))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        + (
            f"{args.records} checkouts x 3 items, one push each, {args.concurrency} in flight through the "
            + ("group-commit writer (row path)" if args.row else "group-commit writer (bursts as columns)")
            if args.input == "push"
            else f"{args.records} checkouts x 3 items, batches of {args.batch}, "
        )
        + (
            ""
            if args.input == "push"
            else "`cxhub sync` of a JSON-lines drop (jsonl connector, "
            + ("row path, columnar: false)" if args.row else "columnar)")
            if args.input == "jsonl"
            else "records generated in Python as the clock runs, "
            + ("Ingestor.ingest per batch" if args.sequential else "Ingestor.ingest_stream")
        )
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if backend == "sqlite":
            tmp = tempfile.mkdtemp()
            r = _child(f"sqlite:///{tmp}/bench.db", args)
        else:
            from tests.kit.databases import temporary_postgres_database

            with temporary_postgres_database() as url:
                r = _child(url, args)
                if args.floor:
                    from store_floor import dump_rows, store_floor

                    floor = store_floor(dump_rows(url), r["stored"], args.batch)
        print(
            f"{backend:10s}: {r['events_per_s']:>7,} events/s  ({r['stored']:,} stored in "
            f"{r['seconds']}s; {r['cpu_us_per_event']} us CPU/event in cxhub"
            + (f", {r['server_cpu_us_per_event']} in PostgreSQL" if r.get("server_cpu_us_per_event") else "")
            + f"), peak RSS {r['peak_rss_mb']} MB"
        )
        if backend == "postgresql" and args.floor:
            print(
                f"{'floor':10s}: {floor['events_per_s']:>7,.0f} events/s  (the same rows, "
                f"{floor['bytes_per_event']:,.0f} bytes/event, COPY'd as finished text into a fresh store "
                f"in the same batches; {floor['server_cpu_us_per_event']:.0f} us CPU/event in PostgreSQL)"
            )
            print(f"{'':10s}  cxhub / floor: {r['events_per_s'] / floor['events_per_s']:.2f}x")
            st = json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--child", "stages"], check=True, capture_output=True, text=True
                ).stdout.splitlines()[-1]
            )
            py = sum(st.values())
            cores = os.cpu_count() or 1
            print(
                f"{'stages':10s}: CPU per event in Python before any database work: "
                + ", ".join(f"{k} {v:.1f}" for k, v in st.items())
                + f" = {py:.0f} us"
            )
            print(
                f"{'ceiling':10s}: {cores * 1e6 / (py + floor['server_cpu_us_per_event']):>7,.0f} events/s  "
                f"= {cores} cores / ({py:.0f} us of those steps + {floor['server_cpu_us_per_event']:.0f} us of "
                "PostgreSQL writing the rows): any ingest doing them in Python and storing these rows, "
                "perfectly spread over every core, with nothing else (no identity resolution, no row "
                "formatting, no waiting)"
            )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (a busy machine slows every figure)")


def _child(url: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", url, "--records", str(args.records), "--batch", str(args.batch)]
    cmd += ["--input", args.input, "--concurrency", str(args.concurrency)]
    if args.sequential:
        cmd.append("--sequential")
    if args.row:
        cmd.append("--row")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
