"""The scorer is replaceable: ``customers.scorer: module:Class`` (the ChurnScorer protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from hub.errors import ConfigError
from hub.features.customers.scoring import ChurnScorer, CustomerFacts, Reason, RiskScore, SignalScorer

from .conftest import feed, tx
from .test_scoring import NOW, regulars, scores


class FlatScorer:
    """Everyone at 0.42, for one reason."""

    def score(self, facts: Sequence[CustomerFacts], *, horizon_days: float) -> list[RiskScore]:
        return [RiskScore(0.42, [Reason("flat", f"flat over {horizon_days:.0f} days", 1.0)]) for _ in facts]


def test_a_configured_scorer_replaces_the_default(make_hub: Any, clock: Any) -> None:
    clock.set(NOW)
    rt = make_hub(customers={"scorer": "features.customers.test_scorer_protocol:FlatScorer"})
    assert isinstance(FlatScorer(), ChurnScorer) and isinstance(SignalScorer(), ChurnScorer)
    feed(rt, *regulars(10), tx("one", "2026-10-01T10:00:00+08:00", "ONE"))
    rt.features["customers"].score()
    got = scores(rt).values()
    assert got and all(s["risk"] == 0.42 and s["reasons"][0]["text"] == "flat over 90 days" for s in got)


@pytest.mark.parametrize("spec", ["no_such_module:X", "features.customers.test_scorer_protocol:Missing", "json:dumps"])
def test_a_scorer_that_cannot_load_is_a_config_error(make_hub: Any, spec: str) -> None:
    with pytest.raises(ConfigError, match=r"scorer .*: (cannot load|not a class|cannot build)"):
        make_hub(customers={"scorer": spec})
