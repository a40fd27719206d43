"""Start-up of several ``cxhub run`` processes (real processes) on one fresh PostgreSQL: they all
come up, however many start at the same moment; ``--no-migrate`` waits for ``cxhub migrate``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kit.databases import temporary_postgres_database

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, url: str) -> Path:
    path = folder / "cxhub.yaml"
    path.write_text(f'secret_key: startup-test-secret\nstore: {{url: "{url}"}}\n', encoding="utf-8")
    return path


def cxhub(config: Path, *args: str) -> subprocess.Popen[str]:
    """``cxhub <args> -c config`` as a process of its own (the interpreter running the tests)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CXHUB_STORE_URL", "CXHUB_SECRET_KEY", "CXHUB_CONFIG")}
    return subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", *args, "-c", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def ready(port: int) -> int | None:
    """``/readyz``'s status, None while nothing answers."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    except httpx.TransportError:
        return None


def stop_all(procs: list[subprocess.Popen[str]]) -> list[tuple[int | None, str]]:
    """SIGTERM every process; (exit code, output) of each (None: killed after 60 s)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    out = []
    for p in procs:
        try:
            stdout, _ = p.communicate(timeout=60)
            out.append((p.returncode, stdout))
        except subprocess.TimeoutExpired:
            p.kill()
            out.append((None, p.communicate()[0]))
    return out


@pytest.mark.postgres
def test_ten_cxhub_run_processes_started_together_on_an_empty_postgresql_all_come_up(tmp_path: Path) -> None:
    with temporary_postgres_database() as url:
        config = write_config(tmp_path, url)
        ports = [free_port() for _ in range(10)]
        procs = [cxhub(config, "run", "--port", str(p)) for p in ports]  # the same moment, give or take ms
        try:
            deadline = time.monotonic() + 240
            pending = set(range(10))
            while pending and time.monotonic() < deadline:
                for i in list(pending):
                    if procs[i].poll() is not None:
                        pytest.fail(f"process {i} exited {procs[i].returncode}: {procs[i].communicate()[0][-2000:]}")
                    if ready(ports[i]) == 200:
                        pending.discard(i)
                time.sleep(0.2)
            assert not pending, f"{len(pending)} of 10 never became ready"
        finally:
            results = stop_all(procs)
        assert [code for code, _ in results] == [0] * 10, [o[-1500:] for c, o in results if c != 0][:1]
        assert not [o for _, o in results if "Traceback" in o]


@pytest.mark.postgres
def test_no_migrate_waits_for_cxhub_migrate_then_serves(tmp_path: Path) -> None:
    with temporary_postgres_database() as url:
        config = write_config(tmp_path, url)
        impatient = cxhub(config, "run", "--no-migrate", "--wait", "1", "--port", str(free_port()))
        out, _ = impatient.communicate(timeout=120)
        assert impatient.returncode == 1
        assert "error:" in out and "not current after waiting 1s (empty (no migrations applied))" in out
        assert "run `cxhub migrate`" in out and "Traceback" not in out

        port = free_port()
        waiting = cxhub(config, "run", "--no-migrate", "--wait", "180", "--port", str(port))
        try:
            time.sleep(3)
            assert waiting.poll() is None and ready(port) is None  # waits, serves nothing yet
            migrate = cxhub(config, "migrate")
            m_out, _ = migrate.communicate(timeout=180)
            assert migrate.returncode == 0, m_out
            assert "migrated: empty (no migrations applied) -> current" in m_out
            deadline = time.monotonic() + 120
            while ready(port) != 200 and time.monotonic() < deadline:
                assert waiting.poll() is None, waiting.communicate()[0][-2000:]
                time.sleep(0.2)
            assert ready(port) == 200
            again = cxhub(config, "migrate")
            assert "the schema is current; nothing to do" in again.communicate(timeout=120)[0]
        finally:
            ((code, out),) = stop_all([waiting])
        assert code == 0, out[-2000:]
        assert "waiting up to 180s for the schema to become current" in out
