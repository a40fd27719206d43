"""The BG/NBD fit: it recovers planted parameters; the calibration / holdout split is the
literature's; and on the public CDNOW data it beats the naive baseline per customer (the goals'
other figures are printed by bench/clv.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hub.features.customers import bgnbd
from hub.features.customers.evaluation import (
    CDNOW_CALIBRATION_END,
    CDNOW_HOLDOUT_END,
    Split,
    auc,
    evaluate_bgnbd,
    load_cdnow,
    rfm_score,
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


def test_split_counts_repeat_purchase_days_from_the_first_purchase() -> None:
    purchases = [
        ("A", 0, 10.0),
        ("A", 0, 5.0),  # the same day: one purchase
        ("A", 10, 1.0),
        ("A", 272, 1.0),  # the calibration's last day
        ("A", 273, 1.0),  # the holdout's first day, twice
        ("A", 273, 1.0),
        ("A", 545, 1.0),  # the holdout's last day
        ("A", 546, 1.0),  # after the holdout
        ("B", 300, 1.0),  # first seen in the holdout: not in the cohort
        ("C", 100, 4.0),  # bought once
    ]
    s = split(purchases, 273, 546)
    assert s.customers == ["A", "C"]
    assert s.x.tolist() == [2, 0]  # the first purchase is not a repeat
    assert s.t_x.tolist() == [272, 0]
    assert s.T.tolist() == [272, 172]  # first purchase to the calibration's last day
    assert s.holdout.tolist() == [2, 0]
    assert s.spend.tolist() == [17.0, 4.0]
    assert s.horizon == 273


def test_cdnow_split_is_the_published_preparation() -> None:
    # lifetimes' calibration_and_holdout_data(..., "1997-09-30", "1998-06-30", freq="D") on the same
    # file gives these figures, customer by customer (bench/clv.py --lifetimes-python checks it)
    s = split(load_cdnow(str(CDNOW)), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    assert len(s.x) == 23_570  # the whole cohort of the public data set
    assert (s.T.min(), s.T.max()) == (189, 272)  # first purchases 1997-01-01 .. 1997-03-25 (12 weeks)
    assert s.x.sum() == 24_337
    assert s.holdout.sum() == 19_684
    assert s.horizon == 273  # weeks 40-78


def test_auc_counts_ties_as_half_and_ranks_the_label_high() -> None:
    label = np.array([False, False, True, True])
    assert auc(np.array([1.0, 2, 3, 4]), label) == 1.0
    assert auc(np.array([4.0, 3, 2, 1]), label) == 0.0
    assert auc(np.array([1.0, 1, 1, 1]), label) == 0.5
    # one positive at 1 against negatives at 1 (a tie, 1/2) and 2 (lost): 0.25
    assert auc(np.array([1.0, 1, 2]), np.array([True, False, False])) == 0.25


def test_rfm_scores_a_recent_frequent_big_spender_above_a_lapsed_one() -> None:
    s = Split(
        x=np.array([6.0, 1]), t_x=np.array([200.0, 20]), T=np.array([210.0, 210]),
        spend=np.array([300.0, 20]), holdout=np.zeros(2), horizon=273.0,
    )  # fmt: skip
    score = rfm_score(s)
    assert score[0] > score[1]
    # the baseline's AUC for "no purchase" ranks by -score: the lapsed customer is the likelier
    assert auc(-score, np.array([False, True])) == 1.0


def test_cdnow_calibration_weeks_1_to_39_predicts_weeks_40_to_78() -> None:
    s = split(load_cdnow(str(CDNOW)), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    f = evaluate_bgnbd(s)
    # the goal this model meets: per customer, better than the calibration rate carried forward
    assert f.mae < f.naive_mae
    # the model's parameters are the data set's well-known ones (per day: alpha is 7x the weekly 4.8)
    assert f.params["r"] == pytest.approx(0.25, abs=0.02)
    assert f.params["alpha"] == pytest.approx(7 * 4.79, rel=0.02)
    assert f.params["a"] == pytest.approx(0.72, abs=0.03)
    # measured, not goals met (bench/clv.py prints them): with the published preparation the holdout
    # total is low by ~14% (goal ±5%; on Fader & Hardie's own 1/10 sample the paper's parameters
    # under-forecast its holdout by 12%), the cumulative weeks 1-78 curve by ~6%, and the ranking
    # of "no purchase in the holdout" is close to, not above, the RFM baseline's
    assert -0.16 < f.total_error < -0.12
    assert -0.08 < f.tracking_predicted / f.tracking_actual - 1 < -0.04
    assert f.auc_expected > 0.75
    assert abs(f.auc_expected - f.rfm_auc_no_purchase) < 0.01
