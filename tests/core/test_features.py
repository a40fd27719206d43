"""Features as plug-ins: discovery, dependency order, broken plug-ins, config sections, the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

from hub.config import load_config
from hub.errors import ConfigError
from hub.feature import Feature, FeatureInfo, install_order, load_feature


def _feature(name: str, *, requires: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Feature:
    cls = type(name.title(), (Feature,), {"name": name, "requires": requires, "after": after})
    return cls()


def _info(f: Feature) -> FeatureInfo:
    return FeatureInfo(f.name, f"tests:{f.name}", f, None)


def _order(*features: Feature) -> list[tuple[str, str]]:
    return [(i.name, i.status) for i in install_order([_info(f) for f in features])]


def test_dependencies_order_the_install_and_ties_go_alphabetically() -> None:
    got = _order(_feature("zeta"), _feature("feedback", after=("surveys",)), _feature("surveys"), _feature("alpha"))
    assert got == [("alpha", "ok"), ("surveys", "ok"), ("zeta", "ok"), ("feedback", "ok")]


def test_after_is_only_an_order_but_requires_is_a_need() -> None:
    got = dict(_order(_feature("feedback", after=("surveys",)), _feature("loyalty", requires=("surveys",))))
    assert got["feedback"] == "ok"
    assert got["loyalty"] == "unavailable: requires feature 'surveys' (not installed)"


def test_a_missing_requirement_makes_its_dependents_unavailable_too() -> None:
    got = dict(_order(_feature("b", requires=("a",)), _feature("c", requires=("b",)), _feature("d")))
    assert got == {
        "d": "ok",
        "b": "unavailable: requires feature 'a' (not installed)",
        "c": "unavailable: requires feature 'b' (unavailable)",
    }


def test_a_dependency_cycle_is_reported_not_looped() -> None:
    got = dict(_order(_feature("a", after=("b",)), _feature("b", requires=("a",)), _feature("c")))
    assert got["c"] == "ok"
    assert got["a"].startswith("unavailable: dependency cycle") and got["b"].startswith("unavailable: dependency cycle")


def test_a_broken_plugin_is_a_status_with_the_reason() -> None:
    def boom() -> Any:
        raise ImportError("No module named 'loyalty_points'")

    assert load_feature("loyalty", "loyalty:feature", boom).status == (
        "unavailable: ImportError: No module named 'loyalty_points'"
    )
    assert "is not a cxhub Feature" in str(load_feature("x", "x:obj", lambda: object()).error)
    wrong = load_feature("other", "x:feature", lambda: _feature("loyalty"))
    assert "calls itself 'loyalty', but is registered as 'other'" in str(wrong.error)


class _LoyaltyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points_per_answer: int = 10


class _Loyalty(Feature):
    name = "loyalty"
    section = "loyalty"

    def config_model(self) -> type[BaseModel]:
        return _LoyaltyConfig

    def install(self, runtime: Any) -> Any:
        return {"points": runtime.config.section("loyalty")}


@pytest.fixture
def with_loyalty(monkeypatch: pytest.MonkeyPatch) -> list[FeatureInfo]:
    import hub.registry

    infos = [*hub.registry.discover_features(), FeatureInfo("loyalty", "tests:loyalty", _Loyalty(), None)]
    monkeypatch.setattr(hub.registry, "discover_features", lambda: install_order(infos))
    monkeypatch.setattr(hub.registry, "installed_features", lambda: [i for i in install_order(infos) if i.feature])
    return infos


def test_a_feature_validates_its_own_section_with_file_and_line(with_loyalty: Any) -> None:
    cfg = load_config(text="secret_key: k\nloyalty:\n  points_per_answer: 5\n", path="cxhub.yaml")
    assert cfg.section("loyalty") == _LoyaltyConfig(points_per_answer=5)
    with pytest.raises(ConfigError) as info:
        load_config(text="secret_key: k\nloyalty:\n  points_per_answr: 5\n", path="cxhub.yaml")
    assert "cxhub.yaml:3" in str(info.value) and "loyalty.points_per_answr" in str(info.value)


def test_an_unknown_section_names_the_sections_there_are() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(text="secret_key: k\nsurvey:\n  rules: []\n", path="cxhub.yaml")
    message = str(info.value)
    assert "cxhub.yaml:2" in message and "unknown section" in message and "surveys" in message


def test_a_section_of_a_broken_feature_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.registry

    broken = FeatureInfo("loyalty", "loyalty:feature", None, "ImportError: No module named 'loyalty_points'")
    infos = [*hub.registry.discover_features(), broken]
    monkeypatch.setattr(hub.registry, "discover_features", lambda: infos)
    with pytest.raises(ConfigError) as info:
        load_config(text="secret_key: k\nloyalty: {}\n", path="cxhub.yaml")
    assert "the feature 'loyalty' that reads this section cannot run: ImportError" in str(info.value)


def test_the_runtime_installs_features_in_order_and_only_those_asked(
    with_loyalty: Any, make_runtime: Any, tmp_path: Any
) -> None:
    config = {"secret_key": "k", "store": {"url": f"sqlite:///{tmp_path / 'f.db'}"}, "loyalty": {}}
    rt = make_runtime(config)
    assert list(rt.features) == ["delivery", "loyalty", "surveys", "feedback", "customers"]
    assert rt.features["loyalty"] == {"points": _LoyaltyConfig()}
    assert list(make_runtime(config, features=("loyalty",)).features) == ["loyalty"]


def test_cxhub_features_lists_each_feature_with_its_status() -> None:
    from cli import app

    out = CliRunner().invoke(app, ["features", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in map(json.loads, out.output.splitlines())}
    assert set(rows) >= {"surveys", "feedback", "delivery"}
    assert rows["feedback"]["after"] == ["surveys"] and rows["surveys"]["section"] == "surveys"
    assert all(r["status"] == "ok" for r in rows.values())
