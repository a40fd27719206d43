"""``cxhub feedback judge``: JSON lines in, one verdict a line out, figures with --report; odd lines
get an error line, never a traceback; ``cxhub model`` without a model folder says what to set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "feedback_labelled.jsonl"


def judge(lines: list[str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "feedback", "judge", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_verdict_lines_with_rating_question_and_odd_input(tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": "送到的时候饭菜全凉了，汤也洒了一半"}, ensure_ascii=False),
        json.dumps({"text": "好评", "rating": 1}, ensure_ascii=False),
        json.dumps({"text": "不错但是配送慢", "rating": 5}, ensure_ascii=False),
        json.dumps({"text": "没有", "question": "您觉得哪里需要改进？"}, ensure_ascii=False),
        json.dumps({"text": "饭里吃出虫子，我要报警"}, ensure_ascii=False),
        "not json",
        json.dumps({"text": "", "rating": 9}),
        json.dumps(["a list"]),
        json.dumps({"text": "x", "label": "maybe"}),
        json.dumps({"text": "😡😡😡"}, ensure_ascii=False),
        json.dumps({"text": "<p>" + "很好" * 50_000 + "</p>"}, ensure_ascii=False),
    ]
    res = judge(lines, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(out) == len(lines)
    cold, one_star, five_star, nothing, bugs = out[:5]
    assert cold["negative"] and cold["severity"] == "low" and "凉了" in cold["why"]
    assert {t["topic"] for t in cold["topics"]} >= {"delivery"}
    assert one_star["negative"] and one_star["severity"] == "high"  # 1 star with 好评 text is still negative
    assert not five_star["negative"]
    assert [(t["topic"], t["polarity"]) for t in five_star["topics"]] == [("delivery", "negative")]
    assert not nothing["negative"] and nothing["probability"] == 0.0
    assert bugs["severity"] == "high" and "吃出虫子" in bugs["reasons"][0]
    assert out[5]["error"].startswith("not JSON") and out[5]["line"] == 6
    assert "outside the scale" in out[6]["error"]
    assert out[7]["error"] == "not a JSON object"
    assert "label 'maybe'" in out[8]["error"]
    assert out[9]["negative"]
    assert not out[10]["negative"] and "HTML removed" in out[10]["note"] and "cut to" in out[10]["note"]
    assert "Traceback" not in res.stderr


def test_report_on_labelled_lines(tmp_path: Path) -> None:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    res = judge(lines, "--report", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("318 labelled (165 negative): precision ")
    assert "negative_below" in res.stdout and "P(neg) >= 0.5" in res.stdout
    f1 = float(res.stdout.split("F1 ")[1].split()[0])
    assert f1 > 0.9  # the shipped model on the hand-labelled set (bench/sentiment_eval.py has the detail)


def test_thresholds_per_source_come_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "cxhub.yaml"
    config.write_text(
        "secret_key: judge-test-secret\n"
        f'store: {{url: "sqlite:///{tmp_path / "x.db"}"}}\n'
        "feedback:\n  sentiment: {by_source: {strict: 0.99}}\n",
        encoding="utf-8",
    )
    line = json.dumps({"text": "还可以吧", "source": "strict"}, ensure_ascii=False)
    plain = json.dumps({"text": "还可以吧"}, ensure_ascii=False)
    res = judge([line, plain], "--config", str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    strict, default = (json.loads(x) for x in res.stdout.splitlines())
    assert strict["negative"] and not default["negative"]


def test_model_commands_need_a_model_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CXHUB_CONFIG", raising=False)
    res = CliRunner().invoke(app, ["model", "rollback"])
    assert res.exit_code == 1 and "model_dir is not set" in res.output
    res = CliRunner().invoke(app, ["model", "list"])
    assert res.exit_code == 0 and "* shipped" in res.output


def test_model_eval_measures_topics_on_held_back_topic_verdicts(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import shutil
    from datetime import UTC, datetime

    from hub.features.feedback.textmodel import SHIPPED
    from hub.features.feedback.topics import WordTrust
    from hub.features.feedback.verdicts import record_label
    from hub.features.feedback.versions import ModelVersions
    from hub.store import Store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CXHUB_CONFIG", raising=False)
    (tmp_path / "cxhub.yaml").write_text(
        "secret_key: judge-test-secret\n"
        f'store: {{url: "sqlite:///{tmp_path / "x.db"}"}}\n'
        "feedback:\n  sentiment: {model_dir: models}\n",
        encoding="utf-8",
    )
    shutil.copytree(SHIPPED, ModelVersions(tmp_path / "models").new_folder("v1"), dirs_exist_ok=True)
    WordTrust({("facilities", "装修"): [0, 5]}, verdicts=5).save(tmp_path / "models" / "v1")
    res = CliRunner().invoke(app, ["migrate"])
    assert res.exit_code == 0, res.output
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.begin() as conn:
        for i in range(30):
            record_label(
                conn,
                verdict="wrong_topic",
                text=f"第{i}家：装修很有格调",
                actor="li",
                via="cli",
                now=datetime(2026, 12, 1, tzinfo=UTC),
                wrong_topics=["facilities"],
            )
    store.dispose()
    res = CliRunner().invoke(app, ["model", "eval", "v1"])
    assert res.exit_code == 0, res.output
    # the candidate (v1, 装修 no longer facilities) against the shipped model on 7 held-back verdicts
    topic_rows = [r for r in res.output.splitlines() if "│ 7 " in r]
    assert len(topic_rows) == 2, res.output
    assert "0.500" in topic_rows[0] and "candidate" in topic_rows[1] and topic_rows[1].count("1.000") == 3
