"""Start-up of many ``cxhub run`` processes at the same moment on one empty PostgreSQL database:
how many of them come up (answer ``/healthz`` and keep running), per try.

Each try makes a fresh database, starts ``--processes`` ``cxhub run`` processes within a few
milliseconds of each other (each on its own port), waits until every one answers or exits, then
stops them with SIGTERM. Printed per try: how many came up, how many exited, the first error line
of a process that failed, and the seconds until the last one answered.

``--checkout`` runs the same on other code (an exported tree of another commit; same venv),
alternating tries.

    .venv/bin/python bench/startup.py [--tries 3] [--processes 10] [--checkout /tmp/base]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def first_error(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "Error" in ln or ln.startswith("error:")]
    if not lines:
        lines = output.strip().splitlines() or ["?"]
    return lines[-1].strip()[:160]


def one_try(checkout: Path, n: int) -> tuple[int, int, str, float]:
    """(came up, exited, first error, seconds until the last one answered)."""
    from kit.databases import temporary_postgres_database

    env = {k: v for k, v in os.environ.items() if not k.startswith("CXHUB_")}
    env["PYTHONPATH"] = str(checkout)
    with temporary_postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cxhub.yaml"
        cfg.write_text(f'secret_key: startup-bench\nstore: {{url: "{url}"}}\n', encoding="utf-8")
        ports = [free_port() for _ in range(n)]
        logs = [Path(tmp) / f"{i}.log" for i in range(n)]
        procs = []
        started = time.monotonic()
        for port, log in zip(ports, logs, strict=True):
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", "import cli; cli.main()", "run", "-c", str(cfg), "--port", str(port)],
                        cwd=checkout,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        up: set[int] = set()
        exited: set[int] = set()
        last = 0.0
        try:
            deadline = time.monotonic() + 300
            while len(up) + len(exited) < n and time.monotonic() < deadline:
                for i in range(n):
                    if i in up or i in exited:
                        continue
                    if procs[i].poll() is not None:
                        exited.add(i)
                    elif healthy(ports[i]):
                        up.add(i)
                        last = time.monotonic() - started
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        error = next((first_error(logs[i].read_text(errors="replace")) for i in sorted(exited)), "")
        return len(up), len(exited), error, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--processes", type=int, default=10)
    ap.add_argument("--checkout", type=Path, help="also try this exported tree of cxhub (same venv)")
    args = ap.parse_args()
    codes = [ROOT] + ([args.checkout.resolve()] if args.checkout else [])
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.processes} processes per try")
    print(f"{'code':<24} {'try':>3} {'came up':>8} {'exited':>7} {'last up s':>9}  first error")
    for t in range(args.tries):
        for code in codes:
            up, exited, error, last = one_try(code, args.processes)
            label = "this" if code == ROOT else str(code)[-24:]
            print(f"{label:<24} {t + 1:>3} {up:>5}/{args.processes:<2} {exited:>7} {last:>9.1f}  {error}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
