"""SIGTERM on a real ``cxhub run`` while it delivers: it stops taking work, lets the sends in flight
finish and records them, puts back what it has not sent (no attempt used, no lease to wait for),
and exits 0 within ``--shutdown-seconds``."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from kit.fakes import FakePlatform, serve
from sqlalchemy import select

from cluster.test_startup import cxhub, free_port, ready
from hub.outbox import enqueue
from hub.sdk.connector import OutboundMessage, utcnow
from hub.store import Store
from hub.store.schema import outbox


@pytest.mark.postgres
def test_sigterm_finishes_the_sends_in_flight_puts_the_rest_back_and_exits_in_time(
    pg_store: Store, tmp_path: Path
) -> None:
    fake = FakePlatform(hang_after_accept=1.0)  # every send takes a second: some are always in flight
    now = utcnow()
    with pg_store.begin() as conn:
        for i in range(40):
            msg = OutboundMessage(key=f"s-{i}", title="t", body=f"body {i}", to=["ou_1"])
            enqueue(conn, destination="app", message=msg, now=now)
    with serve(fake) as base:
        config = tmp_path / "cxhub.yaml"
        config.write_text(
            f'secret_key: shutdown-test-secret\nstore: {{url: "{pg_store.url}"}}\n'
            "destinations:\n  app:\n    connector: feishu_app\n"
            f'    options: {{app_id: cli_test, app_secret: app-secret, base_url: "{base}"}}\n',
            encoding="utf-8",
        )
        port = free_port()
        proc = cxhub(config, "run", "--port", str(port), "--shutdown-seconds", "10")
        try:
            deadline = time.monotonic() + 180
            while len(fake.accepted) < 3 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()[0][-2000:]
                time.sleep(0.05)
            assert len(fake.accepted) >= 3, "cxhub run never delivered"
            assert ready(port) == 200
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            out, _ = proc.communicate(timeout=60)
            took = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, out[-2000:]
    assert took < 10 + 5, f"stopping took {took:.1f}s"  # --shutdown-seconds, plus the interpreter's exit
    with pg_store.connect() as conn:
        got = [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]
    by_status: dict[str, list[dict]] = {}
    for r in got:
        by_status.setdefault(r["status"], []).append(r)
    assert set(by_status) == {"sent", "pending"}, {k: len(v) for k, v in by_status.items()}  # nothing held
    sent_keys = {r["key"] for r in by_status["sent"]}
    assert sent_keys == set(fake.keys())  # every send that reached the platform was recorded...
    assert all(n == 1 for n in fake.keys().values())  # ...once
    assert all(r["attempts"] == 0 and r["locked_by"] is None for r in by_status["pending"])  # back, unused
