"""A real cxhub cluster on one machine, for the cluster test and ``bench/cluster.py``: receivers and
workers as ``cxhub run --role ...`` processes on one PostgreSQL and one JetStream (a private
``nats-server`` that the run may restart), a fake DingTalk robot per store for the staff
notifications, and a load of signed pushes that retries like a platform does.

The pushes are review webhooks (Standard Webhooks signature, ``generic_review`` mapping): every
review with one star is a negative that must become exactly one staff card on its store's robot.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CXHUB = str(Path(sys.executable).with_name("cxhub"))
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
SECRET = "whsec_" + base64.b64encode(b"cluster-webhook-secret").decode()
STORES = [f"S{i:03d}" for i in range(10)]
#: a platform's patience for one attempt (WeChat: 5 s)
ATTEMPT_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- NATS


class PrivateNats:
    """A JetStream server of the run's own, on a free port, with its store in a folder that
    survives a restart (so the streams and what they hold do)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not Path(NATS_SERVER).exists():
            raise RuntimeError("nats-server not found (Debian package nats-server)")
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


# ---------------------------------------------------------------- config and processes


def config_text(pg_url: str, nats_url: str | None, robot: str, stream: str, *, public_port: int = 8080) -> str:
    """Reviews by signed webhook; one DingTalk robot per store (its own rate budget); the feedback
    feature turns every one-star review into a case notified to the store's robot."""
    destinations = "\n".join(
        f"  dt_{s.lower()}:\n    connector: dingtalk_robot\n"
        f'    options: {{access_token: tok-{s.lower()}, secret: SEC-{s.lower()}, base_url: "{robot}"}}'
        for s in STORES
    )
    contacts = "\n".join(
        f"    c_{s.lower()}: {{name: {s}群, kind: group, endpoints: [{{destination: dt_{s.lower()}}}]}}" for s in STORES
    )
    stores = "\n".join(f"      {s}: {{name: 门店{s}, parent: sh, contacts: [c_{s.lower()}]}}" for s in STORES)
    transport = (
        f'transport: {{kind: nats, url: "{nats_url}", stream: {stream}, ack_wait_seconds: 10, max_deliver: 50}}\n'
        if nats_url
        else ""
    )
    return f"""
secret_key: cluster-secret-key
store: {{url: "{pg_url}", pool_size: 5}}
server: {{public_url: "http://127.0.0.1:{public_port}"}}
{transport}sources:
  reviews:
    connector: webhook
    mapping: generic_review
    options: {{secret: "{SECRET}", id_path: review_id}}
destinations:
{destinations}
feedback:
  sentiment: {{engine: snownlp}}
  sla:
    high: {{ack: 1h, resolve: 4h, warn_before: 0, escalate_every: 1h}}
    medium: {{ack: 1h, resolve: 4h, warn_before: 0, escalate_every: 1h}}
    low: {{ack: 1h, resolve: 4h, warn_before: 0, escalate_every: 1h}}
  remind_every: 4h
  contacts:
{contacts}
  org:
    districts: {{sh: {{name: 上海片区}}}}
    stores:
{stores}
"""


@dataclass
class Proc:
    role: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    config: Path
    folder: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def migrate(self) -> None:
        out = subprocess.run(
            [CXHUB, "migrate", "--config", str(self.config)], env=self.env, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"cxhub migrate failed: {out.stderr[-2000:]}")

    def start(self, role: str) -> Proc:
        port = free_port()
        log = self.folder / f"{role}-{port}.log"
        proc = subprocess.Popen(
            [CXHUB, "run", "--config", str(self.config), "--role", role, "--port", str(port), "--no-migrate"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        p = Proc(role, port, proc, log)
        self.procs.append(p)
        return p

    def wait_ready(self, procs: list[Proc], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        pending = list(procs)
        while pending and time.monotonic() < deadline:
            for p in list(pending):
                if not p.alive:
                    raise RuntimeError(f"{p.role} on {p.port} exited {p.proc.returncode}: {p.log_text()[-2000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{p.port}/readyz", timeout=1).status_code == 200:
                        pending.remove(p)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not ready: {[(p.role, p.port, p.log_text()[-500:]) for p in pending]}")

    def receivers(self) -> list[Proc]:
        return [p for p in self.procs if p.role in ("receiver", "all") and p.alive]

    def leader(self) -> Proc | None:
        """The live process that logged taking the scheduler leadership last."""
        found = [p for p in self.procs if p.alive and "now the leader" in p.log_text()]
        return found[-1] if found else None

    def stop(self) -> None:
        for p in self.procs:
            if p.alive:
                p.proc.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.proc.wait(30)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()


@contextmanager
def cluster(pg_url: str, nats_url: str | None, robot: str, stream: str) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="cxhub-cluster-") as tmp:
        folder = Path(tmp)
        path = folder / "cxhub.yaml"
        path.write_text(config_text(pg_url, nats_url, robot, stream), encoding="utf-8")
        env = {
            **os.environ,
            "CXHUB_SECRET_KEY": "cluster-secret-key",
            "CXHUB_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        c = Cluster(path, folder, env)
        try:
            yield c
        finally:
            c.stop()


# ---------------------------------------------------------------- load


def review(n: int, negative: bool) -> dict[str, Any]:
    store = STORES[n % len(STORES)]
    return {
        "review_id": f"rv-{n}",
        "created_at": "2026-12-02T10:00:00+08:00",
        "platform": "meituan",
        "store_code": store,
        "store_name": f"门店{store}",
        "order_id": f"O-{n}",
        "rating": 1 if negative else 5,
        "content": "牛奶是坏的，店员态度很差" if negative else "很好，下次还来",
        # one customer per review: a second complaint of a customer at a store joins the open case
        # (feedback's join_window), and this load counts one card per one-star review
        "member_no": f"M{n:06d}",
    }


def signed(body: bytes, msg_id: str) -> dict[str, str]:
    ts = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": f"v1,{sig}",
    }


@dataclass
class LoadResult:
    accepted: set[int] = field(default_factory=set)  # review numbers answered 2xx
    negatives: set[int] = field(default_factory=set)  # of those, the one-star ones
    attempts: int = 0
    refused: int = 0  # non-2xx answers (503 while NATS restarts...), each retried
    failed_connections: int = 0  # connection errors and platform timeouts, each retried
    gave_up: int = 0
    latencies: list[float] = field(default_factory=list)


async def _load(
    ports: Callable[[], list[int]], n: int, rate: float, negative_share: float, deadline_s: float, seed: int
) -> LoadResult:
    rnd = random.Random(seed)
    result = LoadResult()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    # the platform's patience runs from the request's send: waiting for one of the client's own
    # connections is not the receiver's time
    timeout = httpx.Timeout(ATTEMPT_TIMEOUT, pool=None)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one(i: int) -> None:
            negative = rnd.random() < negative_share
            body = json.dumps(review(i, negative), ensure_ascii=False).encode()
            msg_id = f"msg_{i}"
            give_up = time.monotonic() + deadline_s
            attempt = 0
            while time.monotonic() < give_up:
                live = ports()
                port = live[(i + attempt) % len(live)]  # a retry goes to the next receiver
                attempt += 1
                result.attempts += 1
                started = time.perf_counter()
                try:
                    r = await client.post(
                        f"http://127.0.0.1:{port}/hooks/reviews", content=body, headers=signed(body, msg_id)
                    )
                except httpx.HTTPError:
                    result.failed_connections += 1
                    await asyncio.sleep(0.3)
                    continue
                if 200 <= r.status_code < 300:
                    result.latencies.append(time.perf_counter() - started)
                    result.accepted.add(i)
                    if negative:
                        result.negatives.add(i)
                    return
                result.refused += 1
                await asyncio.sleep(0.3)
            result.gave_up += 1

        tasks = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return result


def run_load(
    ports: Callable[[], list[int]],
    n: int,
    rate: float,
    *,
    negative_share: float = 0.2,
    deadline_s: float = 60.0,
    seed: int = 17,
) -> LoadResult:
    """``n`` signed review pushes at ``rate`` per second over the receivers ``ports()`` gives; each
    is retried (on the next receiver) until it is answered 2xx or ``deadline_s`` passes."""
    return asyncio.run(_load(ports, n, rate, negative_share, deadline_s, seed))


# ---------------------------------------------------------------- what the store and the robots hold


ORDER = re.compile(r"O-(\d+)")


def cards_by_review(robot: Any) -> dict[int, int]:
    """Review number -> how many staff cards name its order."""
    counts: dict[int, int] = {}
    for card in list(robot.received):
        for m in set(ORDER.findall(card.text)):
            counts[int(m)] = counts.get(int(m), 0) + 1
    return counts


def store_counts(pg_url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT external_id FROM inbox WHERE source = 'reviews'"))]
            touchpoints = conn.execute(text("SELECT count(*) FROM touchpoints WHERE source = 'reviews'")).scalar_one()
            outbox = dict(conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all())
        return {"inbox_ids": ids, "touchpoints": int(touchpoints), "outbox": {k: int(v) for k, v in outbox.items()}}
    finally:
        engine.dispose()
