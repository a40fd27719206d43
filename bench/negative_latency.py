"""Negative review -> staff latency under a steady load, through the real ``cxhub run``.

A steady stream of 1-star reviews (default 50/s for 20 s) is POSTed to ``/hooks/reviews`` (signed
Standard Webhooks, the ``webhook`` connector) of a ``cxhub run`` subprocess on a throwaway
PostgreSQL database. Each review is for one of ``--stores`` stores, and each store has its own local
fake DingTalk group robot (signature checked, 20/min limit enforced), as real deployments do: one
robot cannot take 50 messages a second (its limit is 20 a minute), so the load is spread the way
stores spread it. Latency = the moment the fake robot accepted the card carrying the review's order
id minus the moment the request was sent (same machine, same clock). Prints p50 / p95 / p99 / max.

Run: ``.venv/bin/python bench/negative_latency.py [--rate 50] [--seconds 20] [--stores 300] [--sqlite]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from commands.demo.fake_dingtalk import FakeDingTalkRobot

WEBHOOK_SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMTIzNDU2Nzg5MA=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, store_url: str, robot: str, stores: int, port: int) -> Path:
    lines = [
        "secret_key: bench-secret-key",
        f'store: {{url: "{store_url}", pool_size: 10}}',
        f'server: {{public_url: "http://127.0.0.1:{port}"}}',
        "sources:",
        "  reviews:",
        "    connector: webhook",
        "    mapping: generic_review",
        f"    options: {{secret: {WEBHOOK_SECRET}, id_path: review_id}}",
        "destinations:",
    ]
    for i in range(stores):
        lines.append(
            f"  dt_{i}: {{connector: dingtalk_robot, options: "
            f'{{access_token: tok-{i}, secret: SEC-{i}, base_url: "{robot}"}}}}'
        )
    lines += ["feedback:", "  sweep_every: 5s", "  contacts:"]
    for i in range(stores):
        lines.append(f"    c{i}: {{kind: group, endpoints: [{{destination: dt_{i}}}]}}")
    lines += ["  org:", "    stores:"]
    for i in range(stores):
        lines.append(f"      S{i:04d}: {{name: 门店{i}, contacts: [c{i}]}}")
    path = folder / "cxhub.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def breakdown(store_url: str, sent_at: dict[str, float]) -> None:
    """Where the time went: request -> case + outbox row committed, then outbox row -> sent."""
    from sqlalchemy import select

    from hub.store import Store
    from hub.store.schema import outbox

    store = Store(store_url)
    try:
        with store.connect() as conn:
            rows = conn.execute(select(outbox.c.message, outbox.c.created_at, outbox.c.sent_at)).all()
    finally:
        store.dispose()
    ingest, deliver = [], []
    for msg, created, sent in rows:
        found = re.search(r"BO-\d{6}", msg.get("body", ""))
        if found and found.group(0) in sent_at:
            ingest.append(created.timestamp() - sent_at[found.group(0)])
            if sent is not None:
                deliver.append((sent - created).total_seconds())
    for name, vals in (("request -> outbox row committed", ingest), ("outbox row -> sent", deliver)):
        if vals:
            print(f"  {name}: p50 {percentile(vals, 50) * 1000:.0f} ms, p99 {percentile(vals, 99) * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0, help="negative reviews per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--stores", type=int, default=300, help="stores, each with its own robot")
    ap.add_argument("--sqlite", action="store_true", help="SQLite instead of a throwaway PostgreSQL")
    ap.add_argument("--cold", action="store_true", help="no warm-up: first sends pay for new HTTP clients")
    ap.add_argument(
        "--processes", type=int, default=1, help="cxhub run processes sharing the store (scale-out; PostgreSQL)"
    )
    args = ap.parse_args()
    total = int(args.rate * args.seconds)
    print(
        f"{total} negative reviews at {args.rate:g}/s over {args.stores} store robots, "
        f"{args.processes} cxhub run process(es); store: "
        f"{'SQLite' if args.sqlite else 'PostgreSQL'}"
    )

    from contextlib import ExitStack

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.kit
    from tests.kit.databases import temporary_postgres_database

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store_url = (
            f"sqlite:///{folder / 'bench.db'}" if args.sqlite else stack.enter_context(temporary_postgres_database())
        )
        secrets = {f"tok-{i}": f"SEC-{i}" for i in range(args.stores)}
        robot = stack.enter_context(FakeDingTalkRobot(secrets))
        ports = [free_port() for _ in range(args.processes)]
        config = write_config(folder, store_url, robot.base_url, args.stores, ports[0])
        env = {**os.environ, "CXHUB_DELIVERY_POLL_SECONDS": "0.05", "CXHUB_SECRET_KEY": "bench-secret-key"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", "import cli; cli.main()", "run", "--config", str(config), "--port", str(p)],
                env=env,
                stderr=(folder / f"run-{p}.log").open("w"),
            )
            for p in ports
        ]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            for base in bases:
                for _ in range(600):
                    try:
                        if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                else:
                    logs = "".join(f.read_text()[-1000:] for f in folder.glob("run-*.log"))
                    raise SystemExit("cxhub run did not start: " + logs)
            wh = Webhook(WEBHOOK_SECRET)
            sent_at: dict[str, float] = {}
            errors: list[str] = []
            clients = [httpx.Client(base_url=b, timeout=30, limits=httpx.Limits(max_connections=64)) for b in bases]
            lock = threading.Lock()

            def post(n: int) -> None:
                order = f"BO-{n:06d}"
                record = {
                    "review_id": f"bench-{n}",
                    "created_at": datetime.now(UTC).isoformat(),
                    "platform": "meituan",
                    "store_code": f"S{n % args.stores:04d}",
                    "order_id": order,
                    "rating": 1,
                    "content": "等了四十分钟还没上菜，服务员态度很差",
                    "member_no": f"BM{n}",
                }
                body = json.dumps(record, ensure_ascii=False)
                now = datetime.now(UTC)
                sig = wh.sign(f"msg-{n}", now, body)
                headers = {
                    "webhook-id": f"msg-{n}",
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": sig,
                    "content-type": "application/json",
                }
                with lock:
                    sent_at[order] = time.time()
                r = clients[n % len(clients)].post("/hooks/reviews", content=body.encode(), headers=headers)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:80]}")

            # warm-up, not measured: one review per store, so every destination has its HTTP client and
            # connections (a running hub's steady state; a cold client costs an SSL context load)
            warm = 0 if args.cold else args.stores
            if warm:
                with ThreadPoolExecutor(max_workers=32) as pool:
                    for i in range(warm):
                        pool.submit(post, 900_000 + i)
                        time.sleep(1 / args.rate)
                robot.wait_for(warm, 180)
                sent_at.clear()
                print(f"warm-up: {len(robot.received)}/{warm} store robots reached")
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=32) as pool:
                for n in range(total):
                    # steady pacing: request n leaves at n / rate
                    delay = started + n / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(post, n)
            send_secs = time.monotonic() - started
            robot.wait_for(total + warm, 120)
            accepted: dict[str, float] = {}
            for r in robot.received:
                for order in re.findall(r"BO-\d{6}", r.text):
                    accepted.setdefault(order, r.at)
            lat = [accepted[o] - t for o, t in sent_at.items() if o in accepted]
            print(
                f"sent {total} in {send_secs:.1f}s ({total / send_secs:.1f}/s), webhook errors: {len(errors)}"
                + (f" e.g. {errors[0]}" if errors else "")
            )
            print(
                f"notifications accepted by the fake robots: {len(lat)}/{total}; robot rejections: "
                f"{len(robot.rejected)}; busiest robot: {max((robot.max_per_minute(t) for t in secrets), default=0)}/min"
            )
            if lat:
                print(
                    f"latency request -> robot accepted: p50 {percentile(lat, 50) * 1000:.0f} ms, "
                    f"p95 {percentile(lat, 95) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
                    f"max {max(lat) * 1000:.0f} ms (target p99 < 2000 ms)"
                )
            breakdown(store_url, sent_at)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
