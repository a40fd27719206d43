"""What people read in the CLI: times in the configured zone, stores by name, tables that fold at
80 columns instead of cutting cells with "…"; and the operator endpoints' guard (hub/operator.py)
with `cxhub check`'s warning about it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.runtime import build_runtime
from rich.console import Console
from typer.testing import CliRunner

from cli import app
from commands.display import Display, table
from hub.config import load_config
from hub.errors import ConfigError

CONFIG = """
timezone: Asia/Shanghai
surveys:
  stores: {S001: {name: 徐汇店}}
  channels: []
  questionnaires: {retail: retail}
  rules: []
feedback:
  org:
    stores: {S002: {name: 静安店}}
"""


def test_times_in_the_configured_zone_and_stores_by_name() -> None:
    cfg = load_config(text=CONFIG, path="cxhub-test.yaml")
    show = Display(cfg)
    assert show.when(datetime(2026, 12, 2, 10, 3, tzinfo=UTC)) == "2026-12-02 18:03"
    assert show.when("2026-12-02T10:03:09+00:00", seconds=True) == "2026-12-02 18:03:09"
    assert show.when(datetime(2026, 12, 2, 23, 30)) == "2026-12-03 07:30"  # naive = UTC, as stored
    assert show.column("occurred") == "occurred (Asia/Shanghai)"
    # names from both features' sections; an unnamed id stays as it is
    assert show.store("S001") == "徐汇店"
    assert show.store("S002") == "静安店"
    assert show.store("S999") == "S999"
    assert show.store(None) == ""


def test_another_zone_and_a_wrong_one() -> None:
    cfg = load_config(text="timezone: Europe/Berlin\n", path="cxhub-test.yaml")
    assert Display(cfg).when("2026-07-01T10:00:00+00:00") == "2026-07-01 12:00"
    with pytest.raises(ConfigError, match="unknown time zone 'Asia/Shang'"):
        load_config(text="timezone: Asia/Shang\n", path="cxhub-test.yaml")


def test_tables_fold_long_cells_at_80_columns() -> None:
    long_id = "wx_template_refused_43101_user_refused_to_accept_the_msg_" + "x" * 30
    t = table("id", "destination", "status", "tries", "next / sent (Asia/Shanghai)", "title", "receipt / last error")
    t.add_row("12345", "wechat_oa", "dead", "5", "2026-12-02 18:03:09", "满意度调查邀请：徐汇店", long_id)
    console = Console(width=80, record=True, color_system=None)
    console.print(t)
    out = console.export_text()
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "wx_template" in line)
    col = lines[first].index("wx_template")
    assert "".join(line[col:].strip() for line in lines[first:]) == long_id  # folded, every character kept
    assert "2026-12-02" in out


def test_cxhub_events_shows_local_time_and_store_names(tmp_path: Path) -> None:
    import yaml
    from kit.surveys import checkout, config_text, ingest

    full = yaml.safe_load(config_text())
    data = {
        "secret_key": full["secret_key"],
        "store": {"url": f"sqlite:///{tmp_path}/s.db"},
        "sources": full["sources"],
        "feedback": {"org": {"stores": {"S001": {"name": "徐汇店"}}}},
    }
    cfg = tmp_path / "cxhub.yaml"
    rt = build_runtime(yaml.safe_dump(data, allow_unicode=True), path=cfg)
    ingest(rt, checkout("R-1", paid_at="2026-11-02T23:30:00+00:00"))
    rt.close()
    res = CliRunner().invoke(app, ["events", "-c", str(cfg)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "2026-11-03 07:30" in res.output  # 23:30 UTC is the next morning in Shanghai
    assert "徐汇店" in res.output and "S001" not in res.output
    assert "(Asia/Shanghai)" in res.output and "…" not in res.output


def _client(cfg_text: str, tmp_path: Path) -> TestClient:
    from hub.web import create_app

    rt = build_runtime(
        cfg_text + f"secret_key: k\nstore: {{url: 'sqlite:///{tmp_path}/s.db'}}\n", path=tmp_path / "cxhub.yaml"
    )
    return TestClient(create_app(rt).app)


def test_operator_endpoints_open_on_loopback_without_a_token(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("CXHUB_OPERATOR_TOKEN", raising=False)
    client = _client("server: {host: 127.0.0.1}\n", tmp_path)
    assert client.get("/metrics").status_code == 200
    doc = client.get("/openapi.json")
    assert doc.status_code == 200 and "/hooks/{source}" in doc.json()["paths"]


def test_operator_endpoints_refuse_beyond_loopback_without_a_token(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("CXHUB_OPERATOR_TOKEN", raising=False)
    client = _client("server: {host: 0.0.0.0}\n", tmp_path)
    for path in ("/metrics", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 403 and "CXHUB_OPERATOR_TOKEN" in r.text
    assert client.get("/healthz").status_code == 200


def test_operator_token_from_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CXHUB_OPERATOR_TOKEN", "s3cret-operator")
    client = _client("server: {host: 0.0.0.0}\n", tmp_path)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-operator"})
    assert ok.status_code == 200 and "s3cret-operator" not in ok.text


def test_check_warns_about_operator_endpoints_nobody_can_read(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("CXHUB_OPERATOR_TOKEN", raising=False)
    cfg = tmp_path / "cxhub.yaml"
    cfg.write_text("server: {host: 0.0.0.0}\n")
    res = CliRunner().invoke(app, ["check", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "CXHUB_OPERATOR_TOKEN" in res.output and "1 warning(s)" in res.output
    monkeypatch.setenv("CXHUB_OPERATOR_TOKEN", "t")
    res = CliRunner().invoke(app, ["check", "-c", str(cfg)])
    assert "warning" not in res.output
