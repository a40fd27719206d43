"""The BG/NBD fit: it recovers planted parameters, and on the public CDNOW data it beats the naive
baseline per customer (the goals' other figures are printed by bench/clv.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hub.features.customers import bgnbd
from hub.features.customers.evaluation import (
    CDNOW_CALIBRATION_END,
    CDNOW_HOLDOUT_END,
    evaluate_bgnbd,
    load_cdnow,
    split,
)

CDNOW = Path(__file__).resolve().parents[2] / "data" / "cdnow" / "CDNOW_master.txt.gz"


def simulate(params: bgnbd.BgNbdParams, n: int, T: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers drawn from the BG/NBD story itself."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    xs, txs = np.zeros(n), np.zeros(n)
    for i in range(n):
        t, x, last = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x, last = x + 1, t
            if rng.random() < p[i]:
                break
        xs[i], txs[i] = x, last
    return xs, txs, np.full(n, T)


def test_recovers_planted_parameters() -> None:
    planted = bgnbd.BgNbdParams(r=0.5, alpha=10.0, a=0.8, b=2.5)
    x, tx, T = simulate(planted, 8000, 365.0)
    fitted, ll = bgnbd.fit(x, tx, T)
    assert np.isfinite(ll)
    assert fitted.r == pytest.approx(planted.r, rel=0.15)
    assert fitted.alpha == pytest.approx(planted.alpha, rel=0.25)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(planted.a / (planted.a + planted.b), rel=0.2)
    # predictions are probabilities and counts
    alive = bgnbd.probability_alive(fitted, x, tx, T)
    none = bgnbd.probability_no_purchase(fitted, 90, x, tx, T)
    assert np.all((alive >= 0) & (alive <= 1)) and np.all((none >= 0) & (none <= 1))
    assert np.all(bgnbd.expected_purchases(fitted, 90, x, tx, T) >= 0)


def test_a_recent_frequent_buyer_is_likelier_alive_than_a_lapsed_one() -> None:
    p = bgnbd.BgNbdParams(r=0.25, alpha=30.0, a=0.8, b=2.4)
    alive = bgnbd.probability_alive(p, [10, 10], [360, 100], [365, 365])
    assert alive[0] > 0.9 > alive[1]


@pytest.mark.parametrize(
    ("x", "tx", "T", "why"),
    [([], [], [], "no customers"), ([0, 0], [0, 0], [10, 20], "no customer bought twice"), ([1], [5], [3], "t_x <= T")],
)
def test_fit_refuses_what_it_cannot_learn_from(x: list[float], tx: list[float], T: list[float], why: str) -> None:
    with pytest.raises(bgnbd.FitError, match=why):
        bgnbd.fit(x, tx, T)


def test_cdnow_calibration_weeks_1_to_39_predicts_weeks_40_to_78() -> None:
    s = split(load_cdnow(str(CDNOW)), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    assert len(s.x) == 23_570  # the whole cohort of the public data set
    f = evaluate_bgnbd(s)
    # the goal this model meets: per customer, better than the calibration rate carried forward
    assert f.mae < f.naive_mae
    # the model's parameters are the data set's well-known ones (per day: alpha is 7x the weekly 4.8)
    assert f.params["r"] == pytest.approx(0.25, abs=0.02)
    assert f.params["a"] == pytest.approx(0.75, abs=0.05)
    # measured, not goals met (bench/clv.py prints them): the total is low by ~16% (goal ±5%), and
    # the ranking of "no purchase in the holdout" is close to, not above, the RFM baseline's
    assert -0.2 < f.total_error < 0
    assert f.auc_expected > 0.74
