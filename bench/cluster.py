"""Webhook ingest through NATS JetStream (receivers + ingest workers) against one direct-to-store
``cxhub run``, in the same run, and the long form of the cluster test.

    .venv/bin/python bench/cluster.py [--pushes 6000] [--connections 64]   # throughput + slowed store
    .venv/bin/python bench/cluster.py --faults [--fault-pushes 3000]       # the cluster test, long form

Throughput (loopback, one fresh PostgreSQL database per setup, a private nats-server):

1. **direct**: one ``cxhub run`` (``transport: direct``), receiving and committing itself;
2. **jetstream**: two ``cxhub run --role receiver`` and two ``cxhub run --role worker``.

The same encrypted WeChat pushes (sealed by wechatpy, unique MsgId and nonce, as
``bench/webhooks.py`` sends them) are offered as fast as ``--connections`` keep-alive connections
take them (spread over the receivers). Printed per setup: the rate the platform saw answered
(``answered/s``), and the end-to-end rate, from the first push until the last one is a stored
touchpoint (``stored/s``); then the ratio jetstream / direct of the end-to-end rates.

Slowed store: 200 pushes/s for 16 s while another connection holds ``LOCK TABLE inbox IN ACCESS
EXCLUSIVE MODE`` for 10 s (from second 3). Printed per setup: p50 / p99 of the answers, and the
platform timeouts: answers that were not 200 ``success`` (a 503 makes WeChat retry) or came after
5 s (WeChat gives up). Every push answered 200 is then checked to be stored.

Faults: ``tests/cluster``'s scenario with more pushes, a higher rate and every killed process
started again: 3 receivers and 3 workers; kill -9 of a receiver, a worker and the scheduler
leader during the load, and a NATS restart; printed: accepted, stored, cards, retries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from cluster.jetstream_cluster import (  # noqa: E402
    CXHUB,
    STORES,
    PrivateNats,
    cards_by_review,
    cluster,
    free_port,
    run_load,
    store_counts,
)
from webhooks import AES_KEY, APPID, TOKEN, _conn_worker, make_requests  # noqa: E402

PLATFORM_DEADLINE = 5.0


def config(pg_url: str, nats_url: str | None, stream: str) -> str:
    transport = f'transport: {{kind: nats, url: "{nats_url}", stream: {stream}}}\n' if nats_url else ""
    return transport + textwrap.dedent(
        f"""
        store: {{url: "{pg_url}", pool_size: 5}}
        server: {{host: 127.0.0.1}}
        sources:
          oa:
            connector: wechat_oa
            options: {{token: {TOKEN}, encoding_aes_key: {AES_KEY}, app_id: {APPID}}}
        """
    )


class Setup:
    """The processes of one setup, started with ``cxhub run`` on one config."""

    def __init__(self, folder: Path, text: str, env: dict[str, str], worker_nice: int = 0):
        self.worker_nice = worker_nice
        self.path = folder / f"cxhub-{len(list(folder.glob('*.yaml')))}.yaml"
        self.path.write_text(text, encoding="utf-8")
        self.env = env
        self.procs: list[tuple[str, int, subprocess.Popen[bytes]]] = []
        out = subprocess.run([CXHUB, "migrate", "--config", str(self.path)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])

    def start(self, role: str) -> int:
        port = free_port()
        cmd = [CXHUB, "run", "--config", str(self.path), "--role", role, "--port", str(port), "--no-migrate"]
        nice = self.worker_nice if role == "worker" else 0
        log = self.path.with_name(f"{role}-{port}.log")
        proc = subprocess.Popen(
            cmd, env=self.env, stderr=log.open("wb"), preexec_fn=(lambda: os.nice(nice)) if nice else None
        )
        self.procs.append((role, port, proc))
        return port

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        restarts = 0
        for i in range(len(self.procs)):
            while True:
                role, port, proc = self.procs[i]
                if proc.poll() is not None:
                    tail = self.path.with_name(f"{role}-{port}.log").read_text(errors="replace")[-1500:]
                    if restarts == 2 or "address already in use" not in tail:
                        raise RuntimeError(f"cxhub run on {port} exited {proc.returncode}: {tail}")
                    restarts += 1  # another program took the free port meanwhile: another one
                    self.start(role)
                    self.procs[i] = self.procs.pop()
                    continue
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cxhub run on {port} not ready")
                time.sleep(0.2)

    def receivers(self) -> list[int]:
        return [port for role, port, _ in self.procs if role in ("receiver", "all")]

    def stop(self) -> None:
        for _, _, proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for _, _, proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def drive(ports: list[int], requests: list[bytes], rate: float, connections: int) -> dict[str, Any]:
    """Offer ``requests`` at ``rate`` per second (open loop) over ``connections`` spread across
    ``ports``; latencies from each request's scheduled time (bench/webhooks.py's driver)."""
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    lat: list[float] = []
    errors: list[str] = []
    workers = [
        asyncio.create_task(_conn_worker("127.0.0.1", ports[i % len(ports)], queue, lat, errors))
        for i in range(connections)
    ]
    await asyncio.sleep(0.3)
    start = time.perf_counter()
    for i, req in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((start + i / rate, req))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=600)
    elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    late = sum(1 for x in lat if x > PLATFORM_DEADLINE)
    return {
        "sent": len(requests),
        "ok": len(lat),
        "errors": len(errors),
        "timeouts": len(errors) + late,
        "first_errors": errors[:3],
        "elapsed": elapsed,
        "answered_per_s": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "start": start,
    }


def stored(pg_url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from hub.store.schema import touchpoints

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(touchpoints)).scalar_one())
    finally:
        engine.dispose()


def wait_stored(pg_url: str, n: int, timeout: float = 600) -> float:
    """perf_counter() when ``n`` touchpoints are stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored(pg_url) >= n:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"only {stored(pg_url)} of {n} stored after {timeout:.0f}s")


def hold_lock(pg_url: str, after: float, seconds: float) -> threading.Thread:
    """Another client holds ``inbox`` locked for ``seconds``, starting ``after`` seconds from now."""
    from sqlalchemy import create_engine, text

    def run() -> None:
        time.sleep(after)
        engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(text("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE"))
            time.sleep(seconds)
        engine.dispose()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def one_setup(
    kind: str, args: argparse.Namespace, folder: Path, env: dict[str, str], nats: PrivateNats
) -> dict[str, Any]:
    from kit.databases import temporary_postgres_database

    out: dict[str, Any] = {}
    with temporary_postgres_database() as pg:
        text = config(pg, nats.url if kind == "jetstream" else None, f"BENCH_{kind.upper()}")
        setup = Setup(folder, text, env, args.worker_nice)
        try:
            if kind == "direct":
                setup.start("all")
            else:
                for _ in range(2):
                    setup.start("receiver")
                for _ in range(2):
                    setup.start("worker")
            setup.wait_ready()
            ports = setup.receivers()
            next_id = 0
            warm = make_requests("/hooks/oa", 200, next_id)
            next_id += 200
            asyncio.run(drive(ports, warm, 100, 16))
            wait_stored(pg, 200)
            # throughput: as fast as the connections take them
            reqs = make_requests("/hooks/oa", args.pushes, next_id)
            next_id += args.pushes
            r = asyncio.run(drive(ports, reqs, 100_000, args.connections))
            done = wait_stored(pg, 200 + r["ok"])
            out["throughput"] = {**r, "stored_per_s": r["ok"] / (done - r["start"])}
            # slowed store: 200 pushes/s for 16 s, inbox locked for 10 s from second 3
            base = stored(pg)
            reqs = make_requests("/hooks/oa", 200 * 16, next_id)
            locker = hold_lock(pg, 3.3, 10)
            r = asyncio.run(drive(ports, reqs, 200, args.connections))
            locker.join()
            wait_stored(pg, base + r["ok"], timeout=300)
            out["slowed"] = r
        finally:
            setup.stop()
    return out


def throughput(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(
        f"cluster ingest benchmark: {os.cpu_count()} CPUs, load average {load:.1f} at start; "
        f"workers at nice {args.worker_nice}",
        flush=True,
    )
    env = {**os.environ, "CXHUB_SECRET_KEY": "bench-secret-key", "CXHUB_LOG_LEVEL": "ERROR"}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as nats_dir:
        nats = PrivateNats(Path(nats_dir))
        nats.start()
        try:
            for kind in ("direct", "jetstream"):
                label = "direct, 1 process" if kind == "direct" else "jetstream, 2 receivers + 2 workers"
                results[kind] = r = one_setup(kind, args, Path(tmp), env, nats)
                t, s = r["throughput"], r["slowed"]
                print(
                    f"{label:<36} {args.pushes} pushes: answered {t['answered_per_s']:6.0f}/s, stored "
                    f"{t['stored_per_s']:6.0f}/s end to end, errors {t['errors']}",
                    flush=True,
                )
                print(
                    f"{'':<36} 200/s with inbox locked 10 s: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
                    f"platform timeouts {s['timeouts']} of {s['sent']} ({s['errors']} not 200 success)",
                    flush=True,
                )
        finally:
            nats.stop()
    ratio = results["jetstream"]["throughput"]["stored_per_s"] / results["direct"]["throughput"]["stored_per_s"]
    answered = results["jetstream"]["throughput"]["answered_per_s"] / results["direct"]["throughput"]["answered_per_s"]
    print(f"ratio jetstream / direct: stored end to end {ratio:.2f}x, answered {answered:.2f}x (goal >= 1.6x)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def faults(args: argparse.Namespace) -> None:
    from kit.databases import temporary_postgres_database

    from commands.demo.fake_dingtalk import FakeDingTalkRobot

    print(
        f"cluster faults, long form: {args.fault_pushes} pushes at {args.fault_rate}/s, load {os.getloadavg()[0]:.1f}"
    )
    secrets = {f"tok-{s.lower()}": f"SEC-{s.lower()}" for s in STORES}
    with (
        tempfile.TemporaryDirectory() as nats_dir,
        temporary_postgres_database() as pg,
        FakeDingTalkRobot(secrets) as robot,
    ):
        robot.limit_per_minute = 100_000
        nats = PrivateNats(Path(nats_dir))
        nats.start()
        try:
            with cluster(pg, nats.url, robot.base_url, "FAULTS") as c:
                c.migrate()
                procs = [c.start("receiver") for _ in range(3)] + [c.start("worker") for _ in range(3)]
                c.wait_ready(procs, timeout=300)
                events: list[str] = []
                span = args.fault_pushes / args.fault_rate

                def chaos() -> None:
                    for round_ in range(2):
                        time.sleep(span / 10)
                        victim = c.receivers()[0]
                        victim.kill9()
                        events.append(f"round {round_ + 1}: kill -9 receiver {victim.port}")
                        c.start("receiver")
                        time.sleep(span / 10)
                        leader = c.leader()
                        worker = next(p for p in c.procs if p.role == "worker" and p.alive and p is not leader)
                        worker.kill9()
                        events.append(f"round {round_ + 1}: kill -9 worker {worker.port}")
                        c.start("worker")
                        time.sleep(span / 10)
                        leader = c.leader()
                        if leader is not None:
                            leader.kill9()
                            events.append(f"round {round_ + 1}: kill -9 leader {leader.port}")
                            c.start("worker")
                        time.sleep(span / 20)
                        nats.restart(1.0)
                        events.append(f"round {round_ + 1}: NATS restarted")

                killer = threading.Thread(target=chaos)
                killer.start()
                started = time.monotonic()
                result = run_load(
                    lambda: [p.port for p in c.receivers()], args.fault_pushes, args.fault_rate, deadline_s=120
                )
                killer.join()
                accepted = {f"rv-{i}" for i in result.accepted}
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    s = store_counts(pg)
                    unsent = {k: v for k, v in s["outbox"].items() if k != "sent"}
                    if accepted <= set(s["inbox_ids"]) and not unsent and len(robot.received) >= len(result.negatives):
                        break
                    time.sleep(1)
                settle = time.monotonic() - started
                s = store_counts(pg)
                cards = cards_by_review(robot)
        finally:
            nats.stop()
    for e in events:
        print("  " + e)
    stored_ids = set(s["inbox_ids"])
    doubled_cards = sum(1 for n in cards.values() if n > 1)
    print(
        f"accepted (2xx) {len(result.accepted)} of {args.fault_pushes}, gave up {result.gave_up}; "
        f"retries: {result.refused} non-2xx + {result.failed_connections} connection errors"
    )
    print(
        f"stored {len(stored_ids)} (touchpoints {s['touchpoints']}); answered but not stored "
        f"{len(accepted - stored_ids)}; stored twice {len(s['inbox_ids']) - len(stored_ids)}"
    )
    print(
        f"negatives accepted {len(result.negatives)}; cards {sum(cards.values())}; negatives without a card "
        f"{len(result.negatives - set(cards))}; doubled cards {doubled_cards}; outbox {s['outbox']}; "
        f"settled {settle:.0f} s after the load began"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pushes", type=int, default=6000, help="pushes of the throughput run, per setup")
    ap.add_argument("--connections", type=int, default=64, help="keep-alive connections of the driver")
    ap.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the ingest workers at this nice level (on one machine they take the receivers' CPU; "
        "deployed, they have machines of their own)",
    )
    ap.add_argument("--faults", action="store_true", help="run the cluster test's long form instead")
    ap.add_argument("--fault-pushes", type=int, default=3000)
    ap.add_argument("--fault-rate", type=float, default=60)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.faults:
        faults(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
