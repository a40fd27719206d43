"""Migrations under a lock: processes that start together on one fresh store all come up, a process
that may not migrate waits (bounded) for a current schema, and the store says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kit.databases import temporary_postgres_database
from sqlalchemy import text

from hub.errors import ConfigError
from hub.store import Store, locks

ROOT = Path(__file__).resolve().parents[2]

# one process: build a store and migrate it, started with the others at the same moment (a file
# that appears releases them all), so that their upgrades race unless the lock serialises them
MIGRATE = """
import os, sys, time
from hub.store import Store
url, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
Store(url).migrate()
print("migrated", flush=True)
"""


def migrate_together(url: str, n: int, tmp_path: Path) -> list[tuple[int, str]]:
    """Start ``n`` processes that all migrate ``url`` at the same moment; (exit code, output) each."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(n)
    ]
    time.sleep(1.5)  # every interpreter is up and polling for the go file
    go.write_text("go")
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=240)
        out.append((p.returncode, stdout))
    return out


@pytest.mark.postgres
def test_ten_processes_migrate_one_empty_postgresql_together(tmp_path: Path) -> None:
    with temporary_postgres_database() as url:
        results = migrate_together(url, 10, tmp_path)
        failed = [o[-1500:] for code, o in results if code != 0]
        assert not failed, failed[0]
        store = Store(url)
        try:
            assert store.schema_status() == "current"
        finally:
            store.dispose()


def test_processes_migrate_one_fresh_sqlite_file_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    results = migrate_together(url, 4, tmp_path)
    failed = [o[-1500:] for code, o in results if code != 0]
    assert not failed, failed[0]
    assert Store(url).schema_status() == "current"
    assert (tmp_path / "hub.db.cxhub-migrate.lock").exists()  # the lock is a file beside the database


def test_schema_status_says_what_is_missing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    assert store.schema_status() == "empty (no migrations applied)"
    store.migrate()
    assert store.schema_status() == "current"
    with store.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version WHERE version_num = '0011_schedule'"))
    assert store.schema_status() == "behind: missing 0011_schedule"
    assert not store.schema_is_current()
    store.dispose()
    gone = Store("postgresql://postgres@127.0.0.1:1/nothing")
    assert gone.schema_status().startswith("unreachable: ")


def test_no_migrate_waits_for_another_process_then_gives_up_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    waiting = Store(url)
    told: list[str] = []
    with pytest.raises(ConfigError) as exc:
        waiting.wait_until_current(0.3, poll=0.05, waiting=told.append)
    assert "not current after waiting 0.3s (empty (no migrations applied))" in str(exc.value)
    assert "cxhub migrate" in str(exc.value)
    assert told == ["empty (no migrations applied)"]  # told once, not once per poll

    # another process migrates while this one waits: the wait ends
    other = threading.Timer(0.3, Store(url).migrate)
    other.start()
    started = time.monotonic()
    waiting.wait_until_current(60, poll=0.05)
    other.join()
    assert time.monotonic() - started < 60
    assert waiting.schema_is_current()


@pytest.mark.postgres
def test_the_migration_lock_is_one_holder_at_a_time_with_a_bounded_wait(pg_store: Store) -> None:
    other = Store(pg_store.url)
    try:
        with locks.held(pg_store, locks.MIGRATE_LOCK, timeout=1):
            told: list[str] = []
            with (
                pytest.raises(locks.LockTimeout) as exc,
                locks.held(other, locks.MIGRATE_LOCK, timeout=0.3, poll=0.05, waiting=told.append),
            ):
                pass
            assert "'cxhub-migrate' still held by another process (PostgreSQL advisory lock) after 0.3s" in str(
                exc.value
            )
            assert told == ["another process (PostgreSQL advisory lock)"]
        with locks.held(other, locks.MIGRATE_LOCK, timeout=1):  # released: granted at once
            pass
    finally:
        other.dispose()


def test_the_sqlite_lock_file_names_its_holder(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from hub.store import Store, locks\n"
            "s = Store(sys.argv[1])\n"
            "with locks.held(s, locks.MIGRATE_LOCK, timeout=5):\n"
            "    print('held', flush=True); time.sleep(60)\n",
            store.url,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(locks.LockTimeout, match=f"held by pid {holder.pid} "),
            locks.held(store, locks.MIGRATE_LOCK, timeout=0.2, poll=0.05),
        ):
            pass
        holder.kill()  # kill -9: the kernel releases the flock with the process
        holder.wait(10)
        with locks.held(store, locks.MIGRATE_LOCK, timeout=5, poll=0.05):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
