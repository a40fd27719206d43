"""Fault injection: ``kill -9`` a ``cxhub sync`` subprocess at random points, resume, and check that the
store ends with every source row exactly once (nothing lost, nothing doubled)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kit.pull import SECRET, create_pos, insert_orders, order_rows, pos_options
from sqlalchemy import create_engine, text

CXHUB = str(Path(sys.executable).parent / "cxhub")


def _committed(store_db: Path) -> int:
    if not store_db.exists():
        return 0
    eng = create_engine(f"sqlite:///{store_db}")
    try:
        with eng.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM inbox")).scalar_one())
    except Exception:  # the schema is not there yet
        return 0
    finally:
        eng.dispose()


def kill_and_resume(tmp_path: Path, rows: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    src_url = f"sqlite:///{tmp_path / 'pos.db'}"
    eng = create_pos(src_url)
    for first in range(1, rows + 1, 10_000):
        insert_orders(eng, *order_rows(first, min(10_000, rows + 1 - first), lines=1))
    eng.dispose()
    store_db = tmp_path / "store.db"
    cfg = {
        "secret_key": SECRET.decode(),
        "store": {"url": f"sqlite:///{store_db}"},
        "sources": {
            "pos": {"connector": "sql", "mapping": "pos_order", "options": pos_options(src_url, batch_size=500)}
        },
    }
    cfg_path = tmp_path / "cxhub.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    cmd = [CXHUB, "sync", "pos", "-c", str(cfg_path), "--json"]
    env = {**os.environ, "CXHUB_LOG_LEVEL": "ERROR"}
    seen = 0
    killed = 0
    for _ in range(kills):
        target = rng.randint(seen + 1, seen + max(2, (rows - seen) // 2))  # somewhere ahead, never the end
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _committed(store_db) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere: between batches or inside one
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        _, err = proc.communicate()
        now = _committed(store_db)
        assert now >= seen, "committed rows went backwards"
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()[-2000:]
        seen = now
    assert killed >= kills - 1, f"only {killed} of {kills} runs were killed mid-sync"
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    eng = create_engine(f"sqlite:///{store_db}")
    with eng.connect() as conn:
        ext = [r[0] for r in conn.execute(text("SELECT external_id FROM inbox WHERE source = 'pos'"))]
        n_tp = conn.execute(text("SELECT count(*) FROM touchpoints")).scalar_one()
        n_q = conn.execute(text("SELECT count(*) FROM quarantine")).scalar_one()
    eng.dispose()
    assert len(ext) == rows and set(ext) == {f"S{i:08d}" for i in range(1, rows + 1)}
    assert n_tp == rows and n_q == 0


def test_kill_9_mid_sync_short(tmp_path: Path) -> None:
    """3 kills of a 20,000-row sync (the default run); the slow test does 10 kills of 100,000."""
    kill_and_resume(tmp_path, rows=20_000, kills=3, seed=20261102)


@pytest.mark.slow
def test_kill_9_mid_sync_100k_ten_times(tmp_path: Path) -> None:
    kill_and_resume(tmp_path, rows=100_000, kills=10, seed=3)
