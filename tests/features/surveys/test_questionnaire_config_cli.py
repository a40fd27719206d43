"""Questionnaire composition, config errors with file:line:key, and the CLI commands."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.surveys import BASE_SURVEYS, SECRET, checkout, config_text, ingest
from typer.testing import CliRunner

from hub.errors import ConfigError, ConfigErrors
from hub.features.surveys.presets import PRESET_DIR
from hub.features.surveys.questionnaire import (
    basket_shares,
    compose,
    items_text,
    load_questionnaire_file,
    parse_questionnaire,
)
from hub.model import OrderItem
from hub.yamlio import load_yaml_text

RETAIL = load_questionnaire_file(PRESET_DIR / "retail.yaml")


def items(*lines: tuple[str, str, str | None]) -> list[OrderItem]:
    return [OrderItem(name=n, category=c, price=Decimal(p) if p else None) for n, c, p in lines]


# ---------------------------------------------------------------- composition


@pytest.mark.parametrize(
    ("basket", "kwargs", "blocks"),
    [
        # 生鲜 + 乳制品 gets exactly those blocks, the larger share first
        ([("菠菜", "生鲜", "30"), ("牛奶", "乳制品", "16")], {}, ["fresh", "dairy"]),
        ([("菠菜", "生鲜", "10"), ("牛奶", "乳制品", "16"), ("酸奶", "乳制品", "9.9")], {}, ["dairy", "fresh"]),
        # categories without a block add nothing; repeated categories add their block once
        ([("菠菜", "生鲜", "5"), ("苹果", "生鲜", "5"), ("杂项", "其他", "100")], {}, ["fresh"]),
        ([("耳机", "电子产品", "199")], {}, ["electronics"]),
        ([("无", "其他", "1")], {}, []),
        # at most N blocks, by share
        (
            [("a", "生鲜", "1"), ("b", "乳制品", "2"), ("c", "烘焙", "3"), ("d", "日用品", "4")],
            {"max_blocks": 2},
            ["household", "bakery"],
        ),
        ([("a", "生鲜", "1"), ("b", "乳制品", "2")], {"max_blocks": 0}, []),
        # a channel block comes after the category blocks
        ([("菠菜", "生鲜", "30")], {"channel": "self_checkout"}, ["fresh", "checkout_self"]),
        # no prices: shares by quantity, ties keep basket order
        ([("菠菜", "生鲜", None), ("牛奶", "乳制品", None)], {}, ["fresh", "dairy"]),
    ],
)
def test_blocks_follow_the_basket(
    basket: list[tuple[str, str, str | None]], kwargs: dict[str, Any], blocks: list[str]
) -> None:
    composed = compose(RETAIL, items=items(*basket), store_name="徐汇店", **kwargs)
    assert composed.blocks == blocks
    ids = [q["id"] for q in composed.questions]
    assert ids[:2] == ["nps", "overall"] and ids[-1] == "comment"
    assert len(ids) == len(set(ids))


def test_fresh_and_dairy_basket_gets_exactly_those_questions_with_piped_text() -> None:
    c = compose(RETAIL, items=items(("有机菠菜", "生鲜", "25.6"), ("鲜牛奶 1L", "乳制品", "32")), store_name="徐汇店")
    assert c.blocks == ["dairy", "fresh"]
    by_block: dict[str | None, list[str]] = {}
    for q in c.questions:
        by_block.setdefault(q.get("block"), []).append(q["id"])
    assert by_block == {
        None: ["nps", "overall", "comment"],
        "dairy": ["dairy_freshness", "dairy_cold_chain"],
        "fresh": ["fresh_quality", "fresh_issue"],
    }
    texts = {q["id"]: q["text"] for q in c.questions}
    assert texts["nps"] == "您有多大可能向朋友或同事推荐徐汇店？"
    assert texts["fresh_quality"] == "您对所购生鲜的新鲜程度满意吗？"
    assert c.intro is not None and "鲜牛奶 1L、有机菠菜" in c.intro
    assert c.shares == {"乳制品": "0.5556", "生鲜": "0.4444"}


def test_shared_questions_are_asked_once() -> None:
    q = parse_questionnaire(
        {
            "name": "t",
            "base": [{"id": "nps", "type": "nps", "text": "推荐?"}],
            "blocks": [
                {
                    "id": "a",
                    "when": {"category": ["生鲜", "水果"]},
                    "questions": [{"id": "q", "type": "csat", "text": "x"}],
                },
                {"id": "b", "when": {"category": "水果"}, "questions": [{"id": "q", "type": "csat", "text": "y"}]},
            ],
        },
        load_yaml_text("{}")[1],
    )
    c = compose(q, items=items(("a", "生鲜", "1"), ("b", "水果", "2")))
    assert c.blocks == ["a", "b"]  # 水果 (larger) chose a first; b chosen too, its question is a duplicate
    assert [x["id"] for x in c.questions] == ["nps", "q"]


def test_basket_shares_and_item_text() -> None:
    assert basket_shares(items(("a", "x", "1"), ("b", "y", "3"))) == [("y", Decimal("0.75")), ("x", Decimal("0.25"))]
    assert items_text(items(("a", "x", "1"), ("b", "y", "3"), ("c", "y", "2"), ("d", "z", "0.5"))) == "b、c、a等4件商品"
    assert items_text([]) == "商品"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("name: t\nbase:\n  - {id: q1, type: stars, text: x}\n", ":3", "base[0].type"),
        ("name: t\nbase:\n  - {id: q1, type: nps, text: 'hi {customer}'}\n", ":3", "unknown placeholder"),
        ("name: t\nbase:\n  - {id: q1, type: single, text: x, options: [a]}\n", ":3", "at least 2 options"),
        (
            "name: t\nblocks:\n  - {id: b, when: {}, questions: [{id: q, type: nps, text: x}]}\n",
            ":3",
            "needs a category",
        ),
        ("name: t\n", "", "at least one question"),
        ("name: t\nbase:\n  - {id: q1, type: nps, text: x}\n  - {id: q1, type: csat, text: y}\n", "", "repeated"),
    ],
)
def test_questionnaire_errors_name_file_and_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_questionnaire_file(path)
    assert message in str(exc.value)
    assert f"q.yaml{where}" in str(exc.value)


# ---------------------------------------------------------------- config


def _load(tmp_path: Path, surveys: Any) -> Any:
    from hub.config import load_config
    from hub.runtime import Runtime

    path = tmp_path / "cxhub.yaml"
    path.write_text(config_text(surveys), encoding="utf-8")
    cfg = load_config(path)
    cfg.raw.store.url = f"sqlite:///{tmp_path / 'x.db'}"
    rt = Runtime(cfg)
    rt.close()
    return cfg


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_SURVEYS)
    cur: Any = cfg
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return cfg


@pytest.mark.parametrize(
    ("surveys", "key", "message"),
    [
        (_with(("rules", 0, "delay"), "soon"), "surveys.rules[0].delay", "not a duration"),
        (_with(("rules", 0, "sample"), 1.5), "surveys.rules[0].sample", "less than or equal to 1"),
        (_with(("rules", 0, "wen"), {}), "surveys.rules[0].wen", "Extra inputs"),
        (_with(("timezone",), "Mars/Base"), "surveys.timezone", "unknown time zone"),
        (_with(("stores", "S001", "timezone"), "Asia/Nowhere"), "surveys.stores.S001.timezone", "unknown time zone"),
        (_with(("channels", 0, "channel"), "pigeon"), "surveys.channels[0].channel", "Input should be"),
        (_with(("channels", 2, "destination"), "sms_gateway"), "surveys.channels[2].destination", "no destination"),
        (_with(("rules", 0, "questionnaire"), "nope"), "surveys", "neither under `questionnaires:` nor a preset"),
        (_with(("questionnaires", "retail"), "missing.yaml"), "surveys.questionnaires.retail", "neither a file"),
        (_with(("quiet_hours",), {"start": "21:30", "end": "21:30"}), "surveys.quiet_hours", "equal"),
        (_with(("caps",), [{"max": 1, "per": "often"}]), "surveys.caps[0].per", "not a duration"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, surveys: Any, key: str, message: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as exc:
        _load(tmp_path, surveys)
    text = str(exc.value)
    assert message in text and f"{key}" in text, text
    assert "cxhub.yaml:" in text


def test_inline_questionnaire_errors_point_into_the_config(tmp_path: Path) -> None:
    cfg = _with(("questionnaires", "inline"), {"name": "inline", "base": [{"id": "q", "type": "nps", "text": "{x}"}]})
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, cfg)
    assert "unknown placeholder" in str(exc.value) and "cxhub.yaml:" in str(exc.value)


def test_no_surveys_section_is_fine(tmp_path: Path) -> None:
    from hub.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"secret_key": SECRET}), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.section("surveys") is None


# ---------------------------------------------------------------- CLI


def test_cli_invitations_and_stats(make_runtime: Any, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from kit.surveys import outbox_of

    import cli
    from hub.web import create_app

    rt = make_runtime()
    ingest(rt, checkout("R1"), checkout("R2", member=None, phone=None))
    token = outbox_of(rt)[0]["message"]["url"].rsplit("/", 1)[1]
    r = TestClient(create_app(rt)).post(
        f"/s/{token}",
        data={
            "q_nps": "9",
            "q_overall": "5",
            "q_dairy_freshness": "4",
            "q_dairy_cold_chain": "合适",
            "q_fresh_quality": "5",
        },
    )
    assert r.status_code == 200
    path = rt.config.file
    monkeypatch.setenv("CXHUB_STORE_URL", rt.store.url)
    runner = CliRunner()
    out = runner.invoke(cli.app, ["invitations", "--json", "-c", path])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    by_order = {r["order_id"]: r for r in rows}
    assert by_order["R1"]["status"] == "responded" and by_order["R1"]["recipient"] == "138****5678"
    assert by_order["R2"]["decision"] == "suppressed" and by_order["R2"]["reason"] == "unreachable"
    assert "13812345678" not in out.output and token not in out.output
    out = runner.invoke(cli.app, ["invitations", "--reason", "unreachable", "--json", "-c", path])
    assert [json.loads(line)["order_id"] for line in out.output.splitlines()] == ["R2"]
    out = runner.invoke(cli.app, ["stats", "--json", "-c", path])
    [overall] = [json.loads(line) for line in out.output.splitlines()]
    assert (overall["nps"], overall["csat"], overall["response_rate"], overall["responses"]) == (100.0, 100.0, 1.0, 1)
    out = runner.invoke(cli.app, ["stats", "--by", "category", "--since", "2026-11-01", "--json", "-c", path])
    groups = {json.loads(line)["group"] for line in out.output.splitlines()}
    assert groups == {"生鲜", "乳制品"}
    out = runner.invoke(cli.app, ["stats", "--since", "2026-12-01", "--json", "-c", path])
    assert json.loads(out.output)["invited"] == 0
    out = runner.invoke(cli.app, ["stats", "--by", "store", "-c", path])
    assert out.exit_code == 0 and "徐汇店" in out.output  # stores by their configured names
    out = runner.invoke(cli.app, ["stats", "--by", "weather", "-c", path])
    assert out.exit_code != 0
    out = runner.invoke(cli.app, ["invitations", "-c", path])
    assert out.exit_code == 0 and "2 invitation(s)" in out.output


# ---------------------------------------------------------------- cxhub check (no Runtime)


def test_cxhub_check_reports_cross_section_errors_with_file_line_and_key(tmp_path: Path) -> None:
    """Errors that used to surface only when the Runtime started: load_config reports them all."""
    import cli
    from hub.config import load_config

    (tmp_path / "bad_q.yaml").write_text("name: bad\nbase:\n  - {id: q1, type: stars, text: x}\n", encoding="utf-8")
    surveys = copy.deepcopy(BASE_SURVEYS)
    surveys["channels"][2]["destination"] = "sms_gateway"
    surveys["questionnaires"] = {"retail": "retail", "bakery": "questionnaires/bakery.yaml", "bad": "bad_q.yaml"}
    path = tmp_path / "cxhub.yaml"
    path.write_text(config_text(surveys), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()

    def line_of(needle: str) -> int:
        return next(i for i, text in enumerate(lines, 1) if needle in text)

    with pytest.raises(ConfigErrors) as exc:
        load_config(path)
    found = {(e.key, e.line) for e in exc.value.errors}
    assert ("surveys.channels[2].destination", line_of("destination: sms_gateway")) in found
    assert ("surveys.questionnaires.bakery", line_of("bakery: questionnaires/bakery.yaml")) in found
    assert any(e.file and e.file.endswith("bad_q.yaml") and e.line == 3 for e in exc.value.errors), exc.value.errors

    out = CliRunner().invoke(cli.app, ["check", "-c", str(path)])
    assert out.exit_code == 1
    text = " ".join(out.output.split())
    assert f"cxhub.yaml:{line_of('destination: sms_gateway')}: surveys.channels[2].destination" in text, text
    assert "no destination 'sms_gateway'" in text
    assert f"cxhub.yaml:{line_of('bakery: questionnaires/bakery.yaml')}: surveys.questionnaires.bakery" in text
    assert "bad_q.yaml:3" in text

    # fixed, the same config checks clean
    surveys["channels"][2]["destination"] = "sms"
    del surveys["questionnaires"]["bakery"], surveys["questionnaires"]["bad"]
    path.write_text(config_text(surveys), encoding="utf-8")
    out = CliRunner().invoke(cli.app, ["check", "-c", str(path)])
    assert out.exit_code == 0, out.output


def test_feature_sections_plug_into_load_config_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The extension point: a section model's ``check(cfg)`` runs at the end of load_config."""
    from hub.config import load_config
    from hub.features.surveys.config import SurveysConfig

    seen: list[Any] = []

    def check(self: SurveysConfig, cfg: Any) -> list[ConfigError]:
        seen.append(cfg)
        return [cfg.lines.error(("surveys", "timezone"), "from a feature check")]

    monkeypatch.setattr(SurveysConfig, "check", check)
    path = tmp_path / "cxhub.yaml"
    path.write_text(config_text(), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "from a feature check" in str(exc.value) and "surveys.timezone" in str(exc.value)
    assert len(seen) == 1 and "sms" in seen[0].raw.destinations


def test_cxhub_check_warns_about_a_template_channel_without_fields(tmp_path: Path) -> None:
    """A WeChat template (or subscribe, mini-program, Alipay) message with no `fields:` mapping
    would show every field empty: `cxhub check` says so, naming the line, and still passes."""
    import cli
    from hub.config import load_config

    surveys = copy.deepcopy(BASE_SURVEYS)
    path = tmp_path / "cxhub.yaml"
    path.write_text(config_text(surveys), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    warned = [w for w in load_config(path).warnings if "without `fields:`" in w]
    assert [w.split(": ")[1] for w in warned] == ["surveys.channels[0]", "surveys.channels[1]"]
    out = CliRunner().invoke(cli.app, ["check", "-c", str(path)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    first = next(i for i, t in enumerate(lines, 1) if "channel: wechat_template" in t)
    assert f"cxhub.yaml:{first}: surveys.channels[0]: a wechat_template channel without `fields:`" in text, text
    assert "surveys.channels[1]: a miniprogram channel without `fields:`" in text
    assert "surveys.channels[2]" not in text  # SMS: its template takes {link} by default

    surveys["channels"][0]["fields"] = {"first": "{survey}", "keyword1": "{store_name}"}
    surveys["channels"][1]["fields"] = {"thing1": "{store_name}"}
    path.write_text(config_text(surveys), encoding="utf-8")
    out = CliRunner().invoke(cli.app, ["check", "-c", str(path)])
    assert out.exit_code == 0 and "without `fields:`" not in out.output, out.output


def test_cxhub_check_warns_about_an_openid_channel_without_its_app(tmp_path: Path) -> None:
    """Openids are per app: a WeChat channel with no `scope:` reaches only openids stored without
    one, which surprises a config written before scopes; `cxhub check` names it and still passes."""
    from hub.config import load_config

    surveys = copy.deepcopy(BASE_SURVEYS)
    del surveys["channels"][0]["scope"]
    path = tmp_path / "cxhub.yaml"
    path.write_text(config_text(surveys), encoding="utf-8")
    warned = [w for w in load_config(path).warnings if "without `scope:`" in w]
    assert len(warned) == 1 and "surveys.channels[0]: a wechat_template channel" in warned[0], warned
    surveys["channels"][0]["scope"] = "wxoa"
    path.write_text(config_text(surveys), encoding="utf-8")
    assert not [w for w in load_config(path).warnings if "without `scope:`" in w]
