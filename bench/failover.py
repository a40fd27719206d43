"""Failover: seconds from ``kill -9`` of the ``cxhub run`` process holding claimed notifications to
their delivery by another ``cxhub run`` process.

Each run, on a throwaway PostgreSQL database and a local fake of Feishu's message API (the real
``feishu_app`` connector): two ``cxhub run`` processes start and become healthy; ``--messages``
notifications are queued; whichever process claims first takes them all (one batch) and sends;
the platform takes its sends but answers none, so it holds every claim; 6 s later it is killed
with SIGKILL. Printed per run: seconds from the kill to the first of its notifications delivered
by the other process, and to the last one. Every run checks that each notification reached the
platform exactly once (the ones in flight at the kill are sent again with the same idempotency
key, which the platform deduplicates).

``--checkout`` runs the same on other code (an exported tree of another commit; same venv), the
runs of the two alternating, so drift on a shared machine hits both alike.

    .venv/bin/python bench/failover.py [--runs 3] [--messages 10] [--checkout /tmp/base --checkout-runs 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERBOSE = False
#: how long the process holding the claims lives after claiming them
HOLD_SECONDS = 6.0
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ENQUEUE = textwrap.dedent(
    """
    import sys
    from hub.outbox import enqueue
    from hub.sdk.connector import OutboundMessage, utcnow
    from hub.store import Store
    url, n = sys.argv[1], int(sys.argv[2])
    store = Store(url)
    store.migrate()  # before the processes start: n = 0
    with store.begin() as conn:
        for i in range(n):
            enqueue(conn, destination="app", message=OutboundMessage(key=f"f-{i}", title="t", body=str(i), to=["ou_1"]), now=utcnow())
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leases_left(url: str) -> list[tuple[str, float | None, list[str], int]]:
    """Each row's status, seconds left on its lease (the database's clock), holder's pid, attempts."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            q = "SELECT status, locked_until, now(), locked_by, attempts FROM outbox ORDER BY id"
            return [
                (r[0], r[1] and round((r[1] - r[2]).total_seconds(), 1), (r[3] or "").split(":")[1:2], r[4])
                for r in conn.execute(text(q))
            ]
    finally:
        engine.dispose()


def statuses(url: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT status FROM outbox ORDER BY id"))]
    finally:
        engine.dispose()


def one_run(checkout: Path, messages: int) -> tuple[float, float]:
    """(seconds to the first delivery after the kill, seconds to the last)."""
    import httpx
    from kit.databases import temporary_postgres_database
    from kit.fakes import FakePlatform, serve

    env = {k: v for k, v in os.environ.items() if not k.startswith("CXHUB_")}
    env["PYTHONPATH"] = str(checkout)
    py = sys.executable
    # the platform takes A's sends and answers none of them while A lives, and A's client waits
    # (timeout: 120, the most the connector takes): A holds every claim until the kill
    fake = FakePlatform(hang_after_accept=3600)
    with temporary_postgres_database() as url, serve(fake) as base:
        subprocess.run([py, "-c", ENQUEUE, url, "0"], cwd=checkout, env=env, check=True)
        cfg = Path(f"/tmp/cxhub-failover-{os.getpid()}.yaml")
        cfg.write_text(
            f'secret_key: failover-bench\nstore: {{url: "{url}"}}\n'
            "destinations:\n  app:\n    connector: feishu_app\n"
            f'    options: {{app_id: cli_test, app_secret: app-secret, base_url: "{base}", timeout: 120}}\n',
            encoding="utf-8",
        )
        procs: list[subprocess.Popen[bytes]] = []

        logs: list[Path] = []

        def start() -> int:
            port = free_port()
            logs.append(cfg.with_suffix(f".{len(logs)}.log"))
            with logs[-1].open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [py, "-c", "import cli; cli.main()", "run", "-c", str(cfg), "--port", str(port)],
                        cwd=checkout,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            return port

        def alive(i: int) -> None:
            if procs[i].poll() is not None:
                raise SystemExit(f"process {'AB'[i]} exited: {logs[i].read_text(errors='replace')[-2000:]}")

        def healthy(port: int) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        def holder() -> int | None:
            """The pid of the process holding every row, None while that is not so."""
            held = leases_left(url)
            pids = {h[2][0] if h[2] else "" for h in held}
            if len(held) == messages and {h[0] for h in held} == {"sending"} and len(pids) == 1 and "" not in pids:
                return int(pids.pop())
            return None

        try:
            ports = [start(), start()]
            deadline = time.monotonic() + 300
            while not all(healthy(p) for p in ports):
                alive(0)
                alive(1)
                if time.monotonic() > deadline:
                    raise SystemExit("the processes never became healthy")
                time.sleep(0.2)
            # both run and poll; whichever claims first takes every row (one batch) and sends
            subprocess.run([py, "-c", ENQUEUE, url, str(messages)], cwd=checkout, env=env, check=True)
            deadline = time.monotonic() + 180
            while len(fake.accepted) < min(messages, 4) or (pid := holder()) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no process holds every row: {leases_left(url)}")
                time.sleep(0.1)
            time.sleep(HOLD_SECONDS)  # the holder lives on a little (a heartbeat or two), then dies
            dead = next(p for p in procs if p.pid == pid)
            other = next(p for p in procs if p.pid != pid)
            if VERBOSE:
                print(f"  at the kill (status, lease s left, holder pid, attempts): {leases_left(url)}", flush=True)
            os.kill(dead.pid, signal.SIGKILL)
            killed = time.monotonic()
            if VERBOSE:
                print(f"  killed pid {dead.pid}; the other is pid {other.pid}", flush=True)
            fake.hang_after_accept = 0.0  # from now on the platform answers (B's sends)
            first = None
            while True:
                now = time.monotonic() - killed
                got = statuses(url)
                if first is None and "sent" in got:
                    first = now
                if got == ["sent"] * messages:
                    last = now
                    break
                if now > 600:
                    raise SystemExit("not delivered 600 s after the kill")
                time.sleep(0.1)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
            cfg.unlink(missing_ok=True)
            for log in logs:
                log.unlink(missing_ok=True)
        keys = fake.keys()
        if keys != {f"f-{i}": 1 for i in range(messages)}:
            raise SystemExit(f"not exactly once: {dict(keys)}")
        return (first if first is not None else last), last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--checkout", type=Path, help="also measure this exported tree of cxhub (same venv)")
    ap.add_argument("--checkout-runs", type=int, default=1, help="runs on --checkout (its lease may be long)")
    ap.add_argument("--verbose", action="store_true", help="print the seconds left on each lease at the kill")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    plan = [(ROOT, i) for i in range(args.runs)]
    if args.checkout:
        other = [(args.checkout.resolve(), i) for i in range(args.checkout_runs)]
        plan = [x for pair in zip(plan, other + [None] * len(plan), strict=False) for x in pair if x] + other[
            len(plan) :
        ]
    print(
        f"load average at start: {os.getloadavg()[0]:.2f}; {args.messages} notifications claimed by the killed process"
    )
    print(f"{'code':<30} {'run':>3} {'kill -> first delivered s':>26} {'kill -> all delivered s':>24}")
    for checkout, i in plan:
        first, last = one_run(checkout, args.messages)
        label = "this" if checkout == ROOT else str(checkout)[-30:]
        print(f"{label:<30} {i + 1:>3} {first:>26.1f} {last:>24.1f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
