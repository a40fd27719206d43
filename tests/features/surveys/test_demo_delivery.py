"""``cxhub demo`` delivers survey invitations to its local fake WeChat through the real delivery
worker and ``wechat_message`` connector (token endpoint included), and shows what arrived."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

CXHUB = str(Path(sys.executable).with_name("cxhub"))


def test_the_demo_delivers_survey_invitations_to_the_fake_wechat(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CXHUB_STORE_URL", "CXHUB_DEMO_DIR")}
    env["COLUMNS"] = "200"
    res = subprocess.run(
        [CXHUB, "demo", "--workdir", str(tmp_path / "demo")], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "Delivered to the (fake) WeChat" in out and "1 access token(s) from /cgi-bin/stable_token" in out, out
    assert "the fake WeChat refused" not in out
    db = sqlite3.connect(tmp_path / "demo" / "cxhub.db")
    try:
        rows = db.execute(
            "SELECT o.status, o.receipt, o.message FROM outbox o JOIN survey_invitations i ON i.outbox_key = o.key "
            "WHERE i.channel = 'wechat_template'"
        ).fetchall()
    finally:
        db.close()
    assert rows and all(status == "sent" and receipt for status, receipt, _ in rows), rows
    for *_, message in rows:  # what the template shows: its fields, never internal keys
        data = json.loads(message)["data"]
        assert set(data) == {"first", "keyword1", "keyword2", "remark"}, data
    assert "delivery worker -> fake WeChat at http://127.0.0.1:" in out
    assert f"sent {len(rows)}," in out
