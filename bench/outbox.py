"""Outbox throughput: messages/s through claim + send + record, 1 and 2 worker processes.

Runs on a throwaway PostgreSQL database (hub.sdk.testing.temporary_postgres_database) against a fast
local fake of DingTalk's work-notification API (token + asyncsend_v2, answering at once), using the
real ``dingtalk_work`` connector and the real :class:`DeliveryWorker` (one-statement claims with
``FOR UPDATE SKIP LOCKED``, parallel sends, group-committed outcomes). Every run checks that each
message was accepted exactly once by the fake.

Printed with the figures, because on a small shared machine they explain them:

- the load average before and after;
- the fake alone: requests/s it answers to 2 client processes x 4 keep-alive threads (the load
  2 workers offer) and its own CPU per request, to show it is not the ceiling;
- per run: the workers' CPU per message and how busy the whole machine was (``/proc/stat``), so
  "2 processes do not double 1" can be read as "the cores were already full" (or not).

    .venv/bin/python bench/outbox.py [--messages 3000] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot, from /proc/stat (0, 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _fake_server(port_q: Any, keys_q: Any, stop: Any) -> None:
    """A threaded HTTP/1.1 keep-alive server (one thread per connection) answering at once.

    Measured against uvicorn + httptools (a bare ASGI app) for this job: the same CPU per request
    (~0.2 ms), and more requests/s to threaded keep-alive clients, so it stays the simpler one.
    """
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
    started = _cpu_seconds()
    port_q.put(server.server_address[1])
    while not stop.is_set():
        server.handle_request()
    keys_q.put((dict(seen), _cpu_seconds() - started))


def _load_client(port: int, seconds: float, threads: int, out: Any) -> None:
    """Post like a worker does, on keep-alive connections, as fast as possible, for ``seconds``.

    Raw sockets with a canned request rather than httpx: an httpx request costs the client more
    CPU than the fake's answer costs the fake, so with httpx this would measure the clients.
    """
    import socket
    import threading

    counts = [0] * threads
    body = json.dumps(
        {"agent_id": 1, "userid_list": "m", "msg": {"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}}}
    ).encode()

    def run(t: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = sock.makefile("rb")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            head = (
                "POST /topapi/message/corpconversation/asyncsend_v2?access_token=bench-token HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-Cxhub-Idempotency-Key: alone-{os.getpid()}-{t}-{counts[t]}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            counts[t] += 1
        sock.close()

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(sum(counts))


def _worker(url: str, base: str, batch: int, name: str, ready: Any, go: Any, cpu: Any) -> None:
    from hub.features.delivery.worker import DeliveryWorker
    from hub.registry import get
    from hub.sdk.connector import ConnectorContext
    from hub.store import Store

    store = Store(url)
    cls = get("dingtalk_work")
    opts = cls.Options.model_validate({"app_key": "bench", "app_secret": "s", "agent_id": 1, "base_url": base})
    dst = cls("work", opts, ConnectorContext(kv=store))
    w = DeliveryWorker(store, {"work": dst}.__getitem__, ["work"], worker_id=name, batch_size=batch)
    dst.tokens.get()  # start-up (imports, token, connections) is not what we measure
    ready.put(name)
    go.wait()
    started = _cpu_seconds()
    idle = 0
    while idle < 3:  # a few empty pumps in a row: the outbox is drained
        if w.run_once():
            idle = 0
        else:
            idle += 1
            time.sleep(0.05)
    cpu.put(_cpu_seconds() - started)
    w.close()
    dst.close()
    store.dispose()


def _enqueue(url: str, n: int, tag: str) -> None:
    from hub.outbox import enqueue
    from hub.sdk.connector import OutboundMessage, utcnow
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


def run(url: str, base: str, n: int, workers: int, batch: int, tag: str = "") -> tuple[float, float, float]:
    """Drain ``n`` freshly enqueued messages with ``workers`` processes.

    Returns (seconds, the workers' CPU seconds, the machine's busy fraction over the run).
    """
    _enqueue(url, n, tag or f"w{workers}")
    ctx = mp.get_context("spawn")
    ready, go, cpu = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, base, batch, f"bench-{workers}-{i}", ready, go, cpu))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    busy0, total0 = _machine_busy()
    started = time.perf_counter()
    go.set()
    cpu_seconds = sum(cpu.get(timeout=600) for _ in procs)
    for p in procs:
        p.join()
    busy1, total1 = _machine_busy()
    # the workers stop after three idle pumps (~0.15 s): not part of the work
    seconds = time.perf_counter() - started - 0.15
    return seconds, cpu_seconds, (busy1 - busy0) / max(total1 - total0, 1.0)


def fake_alone(port: int, seconds: float = 4.0) -> float:
    """Requests/s the fake answers to 2 client processes x 4 threads (what 2 workers offer)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_load_client, args=(port, seconds, 4, out)) for _ in range(2)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()

    import sys

    from sqlalchemy import func, select

    from hub.outbox import tables as _tables  # noqa: F401  (tables of the delivery feature)
    from hub.store import Store
    from hub.store.schema import outbox

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for tests.kit
    from tests.kit.databases import temporary_postgres_database

    load_before = os.getloadavg()
    ctx = mp.get_context("spawn")
    port_q, keys_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_fake_server, args=(port_q, keys_q, stop))
    server.start()
    port = port_q.get(timeout=30)
    base = f"http://127.0.0.1:{port}"
    alone = 0.0
    try:
        alone = fake_alone(port)
        with temporary_postgres_database() as url:
            store = Store(url)
            store.migrate()
            results = {}
            # warm-up (imports, token fetch, connection pools) is not measured
            run(url, base, 50, 1, args.batch, tag="warmup")
            for workers in (1, 2):
                results[workers] = run(url, base, args.messages, workers, args.batch)
            with store.connect() as conn:
                statuses = dict(conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all())
            store.dispose()
    finally:
        stop.set()
        seen, fake_cpu = keys_q.get(timeout=30)
        server.join(10)
    load_after = os.getloadavg()
    bench_keys = {k: v for k, v in seen.items() if not k.startswith("alone-")}
    dup = {k: v for k, v in bench_keys.items() if v != 1}
    fake_requests = sum(seen.values())
    print(
        f"outbox throughput (claim + send + record), PostgreSQL, fake DingTalk work API, {args.messages} messages,"
        f" batch {args.batch}; {os.cpu_count()} cores, load average before"
        f" {' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print(
        f"  fake alone: {alone:8.1f} requests/s to 2 raw-socket client processes x 4 keep-alive threads;"
        f" its CPU: {fake_cpu / max(fake_requests, 1) * 1e6:.0f} us per request over the whole run"
    )
    for workers, (seconds, cpu_seconds, busy) in results.items():
        rate = args.messages / seconds
        print(
            f"  {workers} worker process{'es' if workers > 1 else ''}: {rate:8.1f} messages/s  ({seconds:.2f} s;"
            f" workers' CPU {cpu_seconds / args.messages * 1e3:.2f} ms per message; machine {busy:.0%} busy)"
        )
    print(f"  outbox statuses: {statuses}; platform saw {len(bench_keys)} keys, {len(dup)} more than once")


if __name__ == "__main__":
    main()
