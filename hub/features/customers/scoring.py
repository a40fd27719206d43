"""The churn-risk score: the purchase model's view of a customer, moved by what they said and lived.

A :class:`ChurnScorer` turns :class:`CustomerFacts` into a :class:`RiskScore` (a probability and
its reasons, strongest first). The default, :class:`SignalScorer`, works on the log-odds scale::

    logit(risk) = logit(P(no purchase within the horizon))      # the BG/NBD model
                + breached cases, open cases, detractor answers, worsening scores,
                  negative reviews, the same topic complained about twice, refunds
                - cases the customer said were put right

Each term is a reason with its weight; the top ones are kept, so a score always says why. A
customer with too little history (fewer purchase days than ``min_purchases``, purchases without
an amount, only refunds) still gets a defined score: the model's prior for a customer like them,
moved by the same signals, and "insufficient history" as the first reason.

Replace the scorer with ``customers.scorer: "my_pkg.scoring:MyScorer"`` (a class with ``score``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from hub.errors import ConfigError
from hub.features.customers.config import Weights

MAX_REASONS = 3


@dataclass
class CustomerFacts:
    """What is known about one customer at scoring time (from the store, by the scoring job)."""

    customer_id: str
    store: str | None = None
    purchases: int = 0  # purchase days with a positive amount
    x: int = 0
    t_x: float = 0.0  # days
    t_obs: float = 0.0  # days
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    spend: float = 0.0
    refunds: int = 0
    bad_amounts: int = 0  # transactions whose amount was missing, not a number, zero or negative
    p_alive: float | None = None
    expected: float | None = None
    p_silent: float | None = None  # P(no purchase within the horizon), from the model
    breached_cases: int = 0
    open_cases: int = 0
    recovered_cases: int = 0
    detractors: int = 0
    scores: list[float] = field(default_factory=list)  # normalised 0..1 answers/ratings, oldest first
    negative_texts: int = 0
    topics: dict[str, int] = field(default_factory=dict)  # complaint topic -> count
    last_negative_at: datetime | None = None


@dataclass
class Reason:
    """One contributing signal: a code, a sentence for people, its weight in log-odds."""

    signal: str
    text: str
    weight: float

    def as_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "text": self.text, "weight": round(self.weight, 3)}


@dataclass
class RiskScore:
    """A churn risk (0..1) and why, strongest reason first."""

    risk: float
    reasons: list[Reason]
    insufficient: bool = False


@runtime_checkable
class ChurnScorer(Protocol):
    """Scores a batch of customers; one score per customer, in order."""

    def score(self, facts: Sequence[CustomerFacts], *, horizon_days: float) -> list[RiskScore]: ...


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


class SignalScorer:
    """The default scorer: the purchase model's silence probability plus weighted CX signals."""

    def __init__(self, weights: Weights | None = None, *, min_purchases: int = 2, prior: float = 0.5):
        self.w = weights or Weights()
        self.min_purchases = min_purchases
        #: P(no purchase in the horizon) for a customer with no usable purchase (the model's new-customer value)
        self.prior = prior

    def score(self, facts: Sequence[CustomerFacts], *, horizon_days: float) -> list[RiskScore]:
        return [self.one(f, horizon_days) for f in facts]

    def _behaviour(self, f: CustomerFacts, horizon_days: float) -> tuple[float, Reason | None, Reason | None]:
        """Base log-odds, the behaviour reason, and the insufficient-history reason (if any)."""
        thin: Reason | None = None
        if f.purchases < self.min_purchases:
            what = f"{f.purchases} purchase day" + ("" if f.purchases == 1 else "s")
            extra = []
            if f.refunds:
                extra.append(f"{f.refunds} refund(s)")
            if f.bad_amounts:
                extra.append(f"{f.bad_amounts} transaction(s) without a positive amount")
            tail = f"; {', '.join(extra)}" if extra else ""
            thin = Reason(
                "insufficient_history", f"insufficient history: {what} ({self.min_purchases} needed){tail}", 0.0
            )
        p = f.p_silent if f.p_silent is not None else self.prior
        base = _logit(p)
        if f.purchases == 0:
            return base, None, thin
        days_since = max(f.t_obs - f.t_x, 0.0)
        if f.x > 0:
            gap = f.t_x / f.x
            text = (
                f"no purchase for {days_since:.0f} days (usually every {gap:.0f}); "
                f"P(no purchase in {horizon_days:.0f} days) {p:.0%}"
            )
        else:
            text = f"one purchase day, {days_since:.0f} days ago; P(no purchase in {horizon_days:.0f} days) {p:.0%}"
        return base, Reason("purchase_pattern", text, base), thin

    def one(self, f: CustomerFacts, horizon_days: float) -> RiskScore:
        w = self.w
        base, behaviour, thin = self._behaviour(f, horizon_days)
        terms: list[Reason] = []
        if behaviour is not None:
            terms.append(behaviour)
        if f.breached_cases and w.breached_case:
            terms.append(Reason("breached_case", f"{f.breached_cases} case(s) past their SLA", w.breached_case))
        if f.open_cases and w.open_case:
            terms.append(Reason("open_case", f"{f.open_cases} unresolved case(s)", w.open_case))
        if f.detractors and w.detractor:
            terms.append(
                Reason(
                    "detractor",
                    f"{f.detractors} detractor answer(s) (NPS 0-6)",
                    w.detractor * min(f.detractors, 3) ** 0.5,
                )
            )
        if len(f.scores) >= 2 and w.worsening_scores:
            before = sum(f.scores[:-1]) / (len(f.scores) - 1)
            if f.scores[-1] <= before - 0.2:
                terms.append(
                    Reason(
                        "worsening_scores",
                        f"scores worsening: latest {f.scores[-1]:.0%} of the scale after {before:.0%} on average",
                        w.worsening_scores,
                    )
                )
        if f.negative_texts and w.negative_text:
            terms.append(
                Reason("negative_text", f"{f.negative_texts} negative review(s) or message(s)", w.negative_text)
            )
        repeated = sorted((t for t, n in f.topics.items() if n >= 2), key=lambda t: (-f.topics[t], t))
        if repeated and w.repeated_topic:
            shown = ", ".join(f"{t} ×{f.topics[t]}" for t in repeated[:3])
            terms.append(Reason("repeated_topic", f"complained about the same topic again: {shown}", w.repeated_topic))
        if f.refunds and w.refunds and f.purchases:
            terms.append(Reason("refunds", f"{f.refunds} refund(s)", w.refunds * min(f.refunds / f.purchases, 1.0) * 2))
        if f.recovered_cases and w.recovered_case:
            terms.append(Reason("recovered_case", f"{f.recovered_cases} case(s) put right", w.recovered_case))
        z = base + sum(t.weight for t in terms if t is not behaviour)
        risk = _sigmoid(z)
        ranked = sorted((t for t in terms if t.weight > 0), key=lambda t: -t.weight)[:MAX_REASONS]
        if not ranked:
            ranked = sorted(terms, key=lambda t: t.weight)[:1]
        reasons = ([thin] if thin else []) + ranked
        if not reasons:
            reasons = [Reason("steady", "nothing points to churn", 0.0)]
        return RiskScore(risk, reasons, insufficient=thin is not None)


def load_scorer(spec: str, weights: Weights, *, min_purchases: int, file: str | None = None) -> ChurnScorer:
    """``"default"`` or ``"module:Class"``: a class built with ``(weights=..., min_purchases=...)``
    or with no arguments, whose instances have ``score``."""
    if spec == "default":
        return SignalScorer(weights, min_purchases=min_purchases)
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"scorer {spec!r}: cannot load ({type(exc).__name__}: {exc})", file=file, key="customers.scorer"
        ) from None
    if not isinstance(cls, type):
        raise ConfigError(f"scorer {spec!r}: not a class", file=file, key="customers.scorer")
    try:
        obj = cls(weights=weights, min_purchases=min_purchases)
    except TypeError:
        try:
            obj = cls()
        except Exception as exc:
            raise ConfigError(
                f"scorer {spec!r}: cannot build ({type(exc).__name__}: {exc})", file=file, key="customers.scorer"
            ) from None
    if not isinstance(obj, ChurnScorer):
        raise ConfigError(f"scorer {spec!r}: has no score(facts, horizon_days=...)", file=file, key="customers.scorer")
    return obj
