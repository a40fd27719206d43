"""The cxhub command, through Typer's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli import app

CXHUB = str(Path(sys.executable).with_name("cxhub"))
runner = CliRunner()
SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CXHUB_SECRET_KEY", "cli-test-secret")
    monkeypatch.delenv("CXHUB_STORE_URL", raising=False)
    drops = tmp_path / "drops"
    drops.mkdir()
    lines = [
        {
            "receipt_no": "R1",
            "status": "PAID",
            "paid_at": "2026-11-01 10:00:00",
            "store": {"code": "S1"},
            "total": "5",
            "items": [{"sku": "1", "cat": "20", "price": "5"}],
            "member": {"number": "M1", "mobile": "13812345678"},
        },
        {
            "receipt_no": "R2",
            "status": "PAID",
            "paid_at": "2026-11-01 11:00:00",
            "store": {"code": "S1"},
            "total": "x",
            "member": {"mobile": "13912345678"},
        },
    ]
    (drops / "pos.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text(
        f"""\
secret_key: ${{CXHUB_SECRET_KEY}}
store: {{url: "sqlite:///store.db"}}
server: {{port: 0}}
sources:
  drops:
    connector: jsonl
    mapping: retail_checkout
    options: {{path: {drops}, id_path: receipt_no}}
  reviews:
    connector: webhook
    mapping: generic_review
    options: {{secret: {SECRET}, id_path: review_id}}
"""
    )
    return cfg


def cx(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_check_ok_and_errors(setup: Path, tmp_path: Path) -> None:
    ok = cx("check", "-c", str(setup))
    assert ok.exit_code == 0 and "2 source(s)" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        setup.read_text().replace("connector: jsonl", "connector: jsnol").replace("connector: webhook", "connector: x")
    )
    res = cx("check", "-c", str(bad))
    assert res.exit_code == 1
    assert "bad.yaml:6: sources.drops.connector: unknown connector 'jsnol'" in res.output
    assert "bad.yaml:10: sources.reviews.connector: unknown connector 'x'" in res.output
    assert "Traceback" not in res.output


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    res = cx("check", "-c", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 1 and "nope.yaml: file not found" in res.output


def test_sync_events_quarantine_replay(setup: Path) -> None:
    res = cx("sync", "drops", "-c", str(setup), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["stored"] == 1 and summary["quarantined"] == 1 and summary["read"] == 2
    res = cx("events", "-c", str(setup), "--json")
    events = [json.loads(line) for line in res.output.splitlines()]
    assert len(events) == 1 and events[0]["order"]["items"][0]["category"] == "乳制品"
    assert "13812345678" not in res.output
    assert set(events[0]) >= {"id", "source", "external_id", "kind", "occurred_at", "customer", "org", "order"}
    q = cx("quarantine", "-c", str(setup), "--json")
    rows = [json.loads(line) for line in q.output.splitlines()]
    assert rows[0]["external_id"] == "R2" and "order.amount" in rows[0]["reason"]
    assert "13912345678" not in q.output and "139****5678" in q.output  # kept for replay, masked on output
    again = cx("replay", "-c", str(setup))
    assert again.exit_code == 1 and "still quarantined 1" in again.output
    again = cx("sync", "drops", "-c", str(setup), "--json")
    assert json.loads(again.output)["read"] == 0


def test_schema_connectors_config(setup: Path) -> None:
    schema = json.loads(cx("schema").output)
    assert schema["title"] == "TouchpointEvent" and "occurred_at" in schema["properties"]
    conns = {json.loads(x)["name"]: json.loads(x) for x in cx("connectors", "--json").output.splitlines()}
    assert conns["jsonl"]["status"] == "ok" and conns["webhook"]["roles"] == ["push"]
    shown = cx("config", "-c", str(setup)).output
    assert SECRET not in shown and "cli-test-secret" not in shown and "***" in shown


def test_map_test_passes_presets_and_fails_broken_fixtures(tmp_path: Path) -> None:
    assert cx("map", "test").exit_code == 0
    (tmp_path / "m.yaml").write_text("name: m\nkind: review\nfields:\n  occurred_at: at\n")
    (tmp_path / "m.fixtures.yaml").write_text(
        "- case: wrong\n  input: {at: '2026-11-01 10:00:00'}\n  expected: {kind: transaction}\n"
    )
    res = cx("map", "test", str(tmp_path))
    assert res.exit_code == 1 and "kind: expected 'transaction', got 'review'" in res.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_hooks_and_stops_on_sigterm(setup: Path) -> None:
    from standardwebhooks.webhooks import Webhook

    port = _free_port()
    env = {**os.environ, "CXHUB_SECRET_KEY": "cli-test-secret"}
    proc = subprocess.Popen(
        [CXHUB, "run", "-c", str(setup), "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("cxhub run did not become healthy")
        body = json.dumps(
            {"review_id": "RV9", "created_at": "2026-11-01 10:00:00", "rating": 1, "content": "差"}
        ).encode()
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        headers = {
            "webhook-id": "m1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SECRET).sign("m1", now, body.decode()),
            "content-type": "application/json",
        }
        assert httpx.post(f"{base}/hooks/reviews", content=body, headers=headers).status_code == 200
        assert (
            httpx.post(
                f"{base}/hooks/reviews", content=body, headers={**headers, "webhook-signature": "v1,x"}
            ).status_code
            == 401
        )
        assert httpx.post(f"{base}/hooks/nope", content=body).status_code == 404
        assert "cxhub_hook_requests_total" in httpx.get(f"{base}/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    res = cx("events", "-c", str(setup), "--json", "--source", "reviews")
    assert json.loads(res.output.splitlines()[0])["feedback"]["rating"] == "1"


def test_demo_runs_end_to_end_as_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CXHUB_STORE_URL", "CXHUB_DEMO_DIR")}
    started = time.monotonic()
    res = subprocess.run(
        [CXHUB, "demo", "--workdir", str(tmp_path / "demo")], env=env, capture_output=True, text=True, timeout=300
    )
    wall = time.monotonic() - started
    assert res.returncode == 0, res.stdout + res.stderr
    assert "What was stored" in res.stdout and "transaction" in res.stdout
    assert "http://127.0.0.1:8080/console" in res.stdout  # where to go next
    assert "Traceback" not in res.stdout + res.stderr
    # the time it reports is the whole demo's (before, the last steps' alone: 0.7 s of 6.8 s)
    reported = float(re.search(r"demo finished in ([0-9.]+)s", res.stdout).group(1))  # type: ignore[union-attr]
    assert wall * 0.5 <= reported <= wall, (reported, wall)


def test_check_warns_of_console_cookies_in_the_clear(setup: Path) -> None:
    """Cookies are Secure only on an https public URL: plain http beyond this machine is said."""
    text = setup.read_text()
    setup.write_text(text.replace("server: {port: 0}", "server: {port: 0, public_url: 'http://cx.example.cn'}"))
    res = cx("check", "-c", str(setup))
    assert res.exit_code == 0 and "not marked Secure" in res.output and "1 warning(s)" in res.output
    for url in ("https://cx.example.cn", "http://127.0.0.1:8080"):
        setup.write_text(text.replace("server: {port: 0}", f"server: {{port: 0, public_url: '{url}'}}"))
        res = cx("check", "-c", str(setup))
        assert res.exit_code == 0 and "not marked Secure" not in res.output, res.output
