"""How fast a short ``cxhub`` command answers: wall time and peak RSS of whole processes.

Runs ``cxhub events --limit 10`` and ``cxhub cases`` (and ``cxhub --help``) on the demo config,
which turns every feature on, against a migrated SQLite store, several times each, and prints
the minimum / median / maximum. With ``--importtime`` it also prints the modules whose imports
cost the most (``python -X importtime``, cumulative microseconds).

    .venv/bin/python bench/cli_startup.py [--runs 7] [--importtime]
    .venv/bin/python bench/cli_startup.py --checkout /path/to/other/clone   # the same, on other code

The machine is shared: compare figures taken in one run (``--checkout`` runs both, alternating).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "events --limit 10": ["events", "--limit", "10"],
    "cases": ["cases"],
    "--help": ["--help"],
}


def run_once(python: str, checkout: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``cxhub`` process."""
    code = "import sys; sys.argv = ['cxhub', *sys.argv[1:]]; import cli; cli.main()"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", code, *args], cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"cxhub {' '.join(args)} failed in {checkout}: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024


def importtime(python: str, checkout: Path, args: list[str], env: dict[str, str], top: int) -> list[tuple[int, str]]:
    code = "import sys; sys.argv = ['cxhub', *sys.argv[1:]]; import cli; cli.main()"
    out = subprocess.run(
        [python, "-X", "importtime", "-c", code, *args], cwd=checkout, env=env, capture_output=True, text=True
    )
    rows: list[tuple[int, str]] = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # top-level imports only: nested ones are inside these
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--checkout", type=Path, help="also measure this clone of cxhub (its own code, same venv)")
    ap.add_argument("--importtime", action="store_true", help="print the costliest top-level imports")
    args = ap.parse_args()

    python = sys.executable
    checkouts = [ROOT] + ([args.checkout.resolve()] if args.checkout else [])
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "CXHUB_SECRET_KEY": "bench-secret",
            "CXHUB_DEMO_DIR": tmp,
            "CXHUB_STORE_URL": f"sqlite:///{tmp}/cxhub.db",
            "CXHUB_CONFIG": str(ROOT / "config" / "demo.yaml"),
        }
        for checkout in checkouts:  # the first command of each migrates the fresh store
            run_once(python, checkout, ["events", "--limit", "1"], {**env, "PYTHONPATH": str(checkout)})
        results: dict[tuple[Path, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for name, argv in COMMANDS.items():
                for checkout in checkouts:  # alternate, so drift on a shared machine hits both alike
                    e = {**env, "PYTHONPATH": str(checkout)}
                    results.setdefault((checkout, name), []).append(run_once(python, checkout, argv, e))
        print(f"cxhub commands on config/demo.yaml (every feature on), {args.runs} runs each")
        print(f"{'checkout':<28} {'command':<20} {'wall s min/med/max':<22} {'peak RSS MB (max)':>18}")
        for (checkout, name), samples in results.items():
            walls = [w for w, _ in samples]
            rss = max(r for _, r in samples)
            label = "this" if checkout == ROOT else str(checkout)[-28:]
            print(
                f"{label:<28} {name:<20} {min(walls):.2f} / {statistics.median(walls):.2f} / {max(walls):.2f}"
                f"{'':<4} {rss:>14.0f}"
            )
        if args.importtime:
            for checkout in checkouts:
                e = {**env, "PYTHONPATH": str(checkout)}
                print(f"\ncostliest top-level imports of `cxhub events --limit 10` ({checkout}), cumulative ms")
                for us, name in importtime(python, checkout, COMMANDS["events --limit 10"], e, 15):
                    print(f"  {us / 1000:8.1f}  {name}")


if __name__ == "__main__":
    main()
