"""Outbox throughput: messages/s through claim + send + record, 1 and 2 worker processes.

Runs on a throwaway PostgreSQL database (hub.testing.temporary_postgres_database) against a fast
local fake of DingTalk's work-notification API (token + asyncsend_v2, answering at once), using the
real ``dingtalk_work`` connector and the real :class:`DeliveryWorker` (``FOR UPDATE SKIP LOCKED``
claims, one transaction per recorded outcome). Every run checks that each message was accepted
exactly once by the fake.

    .venv/bin/python bench/outbox.py [--messages 3000] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _fake_server(port_q: Any, keys_q: Any, stop: Any) -> None:
    seen: Counter[str] = Counter()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in separate writes: avoid 40 ms delayed-ACK stalls

        def log_message(self, *a: Any) -> None:
            pass

        def _reply(self, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply({"errcode": 0, "access_token": "bench-token", "expires_in": 7200})

        def do_POST(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            self.rfile.read(n)
            key = self.headers.get("x-cxhub-idempotency-key") or ""
            seen[key] += 1
            self._reply({"errcode": 0, "errmsg": "ok", "task_id": 1})

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    server.timeout = 0.2
    port_q.put(server.server_address[1])
    while not stop.is_set():
        server.handle_request()
    keys_q.put(dict(seen))


def _worker(url: str, base: str, batch: int, name: str, ready: Any, go: Any) -> None:
    from hub.connector import ConnectorContext
    from hub.delivery.worker import DeliveryWorker
    from hub.registry import get
    from hub.store import Store

    store = Store(url)
    cls = get("dingtalk_work")
    opts = cls.Options.model_validate({"app_key": "bench", "app_secret": "s", "agent_id": 1, "base_url": base})
    dst = cls("work", opts, ConnectorContext(kv=store))
    w = DeliveryWorker(store, {"work": dst}.__getitem__, ["work"], worker_id=name, batch_size=batch)
    dst.tokens.get()  # start-up (imports, token, connections) is not what we measure
    ready.put(name)
    go.wait()
    idle = 0
    while idle < 3:  # a few empty pumps in a row: the outbox is drained
        if w.run_once():
            idle = 0
        else:
            idle += 1
            time.sleep(0.05)
    w.close()
    dst.close()
    store.dispose()


def _enqueue(url: str, n: int, tag: str) -> None:
    from hub.connector import OutboundMessage, utcnow
    from hub.outbox import enqueue
    from hub.store import Store

    store = Store(url)
    now = utcnow()
    with store.begin() as conn:
        for i in range(n):
            enqueue(
                conn,
                destination="work",
                message=OutboundMessage(
                    key=f"{tag}-{i}", title="差评提醒", body=f"门店 SH-{i % 50:03d} 收到 1 星评价", to=["manager01"]
                ),
                now=now,
            )
    store.dispose()


def run(url: str, base: str, n: int, workers: int, batch: int, tag: str = "") -> float:
    """Seconds for ``workers`` processes to drain ``n`` freshly enqueued messages."""
    _enqueue(url, n, tag or f"w{workers}")
    ctx = mp.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_worker, args=(url, base, batch, f"bench-{workers}-{i}", ready, go)) for i in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    started = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    # the workers stop after three idle pumps (~0.15 s): not part of the work
    return time.perf_counter() - started - 0.15


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()

    from sqlalchemy import func, select

    from hub.delivery import schema as _schema  # noqa: F401  (tables of the delivery feature)
    from hub.store import Store
    from hub.store.schema import outbox
    from hub.testing import temporary_postgres_database

    ctx = mp.get_context("spawn")
    port_q, keys_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_fake_server, args=(port_q, keys_q, stop))
    server.start()
    base = f"http://127.0.0.1:{port_q.get(timeout=30)}"
    try:
        with temporary_postgres_database() as url:
            store = Store(url)
            store.migrate()
            results = {}
            # warm-up (imports, token fetch, connection pools) is not measured
            _warm = run(url, base, 50, 1, args.batch, tag="warmup")
            for workers in (1, 2):
                seconds = run(url, base, args.messages, workers, args.batch)
                results[workers] = (args.messages / seconds, seconds)
            with store.connect() as conn:
                statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
            store.dispose()
    finally:
        stop.set()
        seen = keys_q.get(timeout=30)
        server.join(10)
    dup = {k: v for k, v in seen.items() if v != 1}
    print(
        f"outbox throughput (claim + send + record), PostgreSQL, fake DingTalk work API, {args.messages} messages, batch {args.batch}"
    )
    for workers, (rate, seconds) in results.items():
        print(f"  {workers} worker process{'es' if workers > 1 else ''}: {rate:8.1f} messages/s  ({seconds:.2f} s)")
    print(f"  outbox statuses: {statuses}; platform saw {len(seen)} keys, {len(dup)} more than once")


if __name__ == "__main__":
    main()
