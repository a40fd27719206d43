"""The ``customers:`` section: the scoring job, the churn-risk signals' weights, the action rules and
the JSON API's keys. Pure pydantic (``hub.config`` loads it; it must not import ``hub.config``).

```yaml
customers:
  score_every: 1d                 # the scoring job (cxhub run's leader); `cxhub customers score` by hand
  horizon: 90d                    # "expected purchases in the next ..." and the value at risk
  min_purchases: 2                # fewer: the score says "insufficient history"
  at_risk: 0.6                    # `cxhub stats --at-risk` lists customers at or above this risk
  actions:
    - name: vip_win_back
      min_risk: 0.7               # the risk crossed this (it was below at the previous scoring)
      min_value: 500              # spend in the last year (yuan)
      negative_within: 30d        # after a negative experience this recent
      do: win_back_case           # a case for the customer's store (the feedback feature)
    - name: recovery_survey
      min_risk: 0.6
      negative_within: 14d
      do: survey
      survey: recovery            # a rule of surveys.rules (give it enabled: false)
  api_keys:                       # bearer tokens of the JSON API, each with its scope
    hq_analyst: {token: "${CUSTOMERS_API_TOKEN}", scope: hq}
    east_manager: {token: "${EAST_TOKEN}", scope: "region:east"}
```
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.errors import ConfigError, did_you_mean
from hub.sdk.durations import Duration

if TYPE_CHECKING:
    from hub.config import Config

SCOPE_LEVELS = ("hq", "region", "district", "store")
_SCOPE = re.compile(r"^(hq|(region|district|store):(.+))$")


def check_scope(value: str) -> str:
    """``hq``, ``region:ID``, ``district:ID`` or ``store:ID``."""
    if not _SCOPE.match(value.strip()):
        raise ValueError(f"scope {value!r}: give hq, region:ID, district:ID or store:ID")
    return value.strip()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Weights(_Section):
    """How much each signal moves the risk (log-odds; 0 turns a signal off)."""

    breached_case: float = 1.6
    open_case: float = 0.7
    detractor: float = 0.9
    worsening_scores: float = 0.6
    negative_text: float = 0.6
    repeated_topic: float = 0.8
    refunds: float = 0.4
    recovered_case: float = -0.6


class ActionRule(_Section):
    """One rule: when a valuable customer's risk crosses ``min_risk`` after a negative experience."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    enabled: bool = True
    min_risk: float = Field(ge=0, le=1)
    min_value: float = Field(default=0, ge=0, description="spend in the last year")
    negative_within: Duration = Field(default=30 * 86400, gt=0)
    do: Literal["win_back_case", "survey"]
    survey: str | None = Field(default=None, description="the surveys rule, for do: survey")
    severity: Literal["low", "medium", "high"] = "medium"
    cooldown: Duration = Field(default=90 * 86400, gt=0, description="at most one action per customer per rule")

    @model_validator(mode="after")
    def _survey(self) -> ActionRule:
        if self.do == "survey" and not self.survey:
            raise ValueError(f"action {self.name!r}: do: survey needs survey: (a rule of surveys.rules)")
        return self


class ApiKey(_Section):
    """A bearer token of the JSON API and the part of the org it may read."""

    token: SecretStr
    scope: str = "hq"

    _scope = field_validator("scope")(classmethod(lambda cls, v: check_scope(v)))

    @field_validator("token")
    @classmethod
    def _long(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("token: at least 16 characters")
        return v


class CustomersConfig(_Section):
    """The whole ``customers:`` section."""

    enabled: bool = True
    score_every: Duration = Field(default=86400, gt=0)
    horizon: Duration = Field(default=90 * 86400, gt=0)
    min_purchases: int = Field(default=2, ge=1)
    fit_sample: int = Field(default=50_000, ge=100, description="customers the model is fitted on (about)")
    batch_size: int = Field(default=20_000, ge=100)
    signal_window: Duration = Field(
        default=365 * 86400, gt=0, description="what customers said and lived, this far back"
    )
    value_window: Duration = Field(default=365 * 86400, gt=0)
    at_risk: float = Field(default=0.6, ge=0, le=1)
    scorer: str = Field(default="default", description="'default' or 'module:Class' (a ChurnScorer)")
    weights: Weights = Field(default_factory=Weights)
    actions: list[ActionRule] = Field(default_factory=list)
    api_keys: dict[str, ApiKey] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> CustomersConfig:
        names = [a.name for a in self.actions]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"actions: names must be unique; repeated: {dup}")
        return self

    def check(self, cfg: Config) -> list[ConfigError]:
        """Actions that need another feature's config: a survey action names a rule of surveys.rules."""
        errors: list[ConfigError] = []
        surveys = cfg.section("surveys")
        rules = [r.name for r in getattr(surveys, "rules", [])]
        for i, action in enumerate(self.actions):
            if action.do == "survey" and action.survey not in rules:
                errors.append(
                    cfg.lines.error(
                        ("customers", "actions", i, "survey"),
                        f"no survey rule {action.survey!r}; rules: {sorted(rules)}"
                        + did_you_mean(action.survey or "", rules),
                    )
                )
        return errors
