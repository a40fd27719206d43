"""The candidate purchase models that bench/clv.py measures beside BG/NBD (Pareto/NBD, MBG/NBD):
their likelihoods are right, so the figures printed for them are the models', not the code's.
Pareto/NBD's integral against quadrature; both fits recover parameters planted in data simulated
from each model; forecasts do not depend on the unit of time; on CDNOW the same figures as
pymc-marketing 0.19.2's maximum-likelihood fits (bench/RESULTS.md, 2026-12-03)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import integrate

from hub.features.customers.evaluation import CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END, load_cdnow, split

ROOT = Path(__file__).resolve().parents[3]
CDNOW = ROOT / "tests" / "data" / "cdnow" / "CDNOW_master.txt.gz"
Arr = NDArray[np.float64]


@pytest.fixture(scope="module")
def clv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_clv", ROOT / "bench" / "clv.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_clv"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("alpha", "beta", "p", "q", "t"),
    [
        (10.58, 11.67, 0.55, 1.61, 0.0),  # the CDNOW sample's estimates (weeks)
        (81.1, 61.8, 3.6, 1.52, 120.0),  # the full data's, in days
        (5000.0, 0.5, 40.0, 1.2, 10.0),  # alpha far above beta: the 2F1 argument near 1
        (0.3, 9000.0, 0.4, 7.0, 300.0),  # beta far above alpha: in Fader & Hardie's form, argument near -30
        (2.0, 2.0, 1.5, 0.6, 5.0),
    ],
)
def test_pareto_nbd_integral_matches_quadrature(
    clv: ModuleType, alpha: float, beta: float, p: float, q: float, t: float
) -> None:
    shift = -p * np.log(alpha + t) - q * np.log(beta + t)  # keep the integrand near 1 for quad
    value, _ = integrate.quad(
        lambda u: np.exp(-p * np.log(alpha + u) - q * np.log(beta + u) - shift), t, np.inf, limit=500
    )
    got = clv.pnbd_log_tail(alpha, beta, np.array([p]), q, np.array([t]))[0]
    assert got == pytest.approx(np.log(value) + shift, abs=1e-7)


def simulate_pareto_nbd(
    r: float, alpha: float, s: float, beta: float, n: int, T: float, seed: int = 3
) -> tuple[Arr, Arr, Arr]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    life = rng.exponential(1 / rng.gamma(s, 1 / beta, n))
    xs, txs = np.zeros(n), np.zeros(n)
    for i in range(n):
        end, t, x = min(life[i], T), 0.0, 0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > end:
                break
            x, txs[i] = x + 1, t
        xs[i] = x
    return xs, txs, np.full(n, T)


def simulate_mbg_nbd(
    r: float, alpha: float, a: float, b: float, n: int, T: float, seed: int = 5
) -> tuple[Arr, Arr, Arr]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    xs, txs = np.zeros(n), np.zeros(n)
    for i in range(n):
        if rng.random() < drop[i]:  # gone right after the first purchase
            continue
        t, x = 0.0, 0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x, txs[i] = x + 1, t
            if rng.random() < drop[i]:
                break
        xs[i] = x
    return xs, txs, np.full(n, T)


def test_pareto_nbd_recovers_planted_parameters(clv: ModuleType) -> None:
    x, tx, T = simulate_pareto_nbd(0.6, 10.0, 0.8, 12.0, 6000, 39.0)
    (r, alpha, s, beta), ll = clv._mle(clv.pnbd_loglik, x, tx, T)
    assert np.isfinite(ll)
    assert r == pytest.approx(0.6, rel=0.15)
    assert r / alpha == pytest.approx(0.06, rel=0.15)  # the mean purchase rate
    assert s / beta == pytest.approx(0.8 / 12.0, rel=0.3)  # the mean dropout rate
    p = np.array([r, alpha, s, beta])
    alive = clv.pnbd_alive(p, x, tx, T)
    none = clv.pnbd_no_purchase(p, 39.0, x, tx, T)
    assert np.all((alive > 0) & (alive <= 1)) and np.all((none >= 0) & (none <= 1))
    # a customer seen only at the first purchase is alive, and with no purchase yet the chance of
    # none in t is E[(mu + lambda e^-(lambda + mu) t) / (lambda + mu)] over the two gammas
    zero = np.zeros(1)
    assert clv.pnbd_alive(p, zero, zero, zero)[0] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    lam, mu = rng.gamma(r, 1 / alpha, 400_000), rng.gamma(s, 1 / beta, 400_000)
    mc = np.mean((mu + lam * np.exp(-(lam + mu) * 39.0)) / (lam + mu))
    assert clv.pnbd_no_purchase(p, 39.0, zero, zero, zero)[0] == pytest.approx(mc, abs=0.005)


def test_mbg_nbd_recovers_planted_parameters(clv: ModuleType) -> None:
    x, tx, T = simulate_mbg_nbd(0.5, 8.0, 0.9, 2.0, 6000, 52.0)
    (r, alpha, a, b), ll = clv._mle(clv.mbg_loglik, x, tx, T)
    assert np.isfinite(ll)
    assert r == pytest.approx(0.5, rel=0.15)
    assert r / alpha == pytest.approx(0.5 / 8.0, rel=0.15)
    assert a / (a + b) == pytest.approx(0.9 / 2.9, rel=0.2)
    p = np.array([r, alpha, a, b])
    # unlike BG/NBD, a customer with no repeat purchase may be gone
    assert clv.mbg_alive(p, np.zeros(1), np.zeros(1), np.full(1, 52.0))[0] < 1.0
    assert np.all(clv.mbg_expected(p, 52.0, x, tx, T) >= 0)


def test_forecasts_do_not_depend_on_the_unit(clv: ModuleType) -> None:
    x, tx, T = simulate_pareto_nbd(0.6, 70.0, 0.8, 84.0, 3000, 273.0)
    for c in clv.CANDIDATES:
        days, _ = c.fit(x, tx, T)
        weeks, _ = c.fit(x, tx / 7, T / 7)
        assert weeks[1] == pytest.approx(days[1] / 7, rel=1e-3)
        forecast_days = c.expected(days, 91.0, x, tx, T)
        forecast_weeks = c.expected(weeks, 13.0, x, tx / 7, T / 7)
        assert np.max(np.abs(forecast_days - forecast_weeks)) < 1e-3


def test_cdnow_figures_match_pymc_marketing(clv: ModuleType) -> None:
    """The full CDNOW split (days): parameters, log-likelihood and holdout total of each candidate
    as pymc-marketing's flat-prior fits gave them in the same bench run."""
    s = split(load_cdnow(str(CDNOW)), CDNOW_CALIBRATION_END, CDNOW_HOLDOUT_END)
    reference = {
        "BG/NBD": ((0.2516, 33.52, 0.7234, 2.161), -142_726.06, 16_874),
        "Pareto/NBD": ((0.5974, 81.1, 0.5222, 61.79), -142_772.73, 17_153),
        "MBG/NBD": ((0.6371, 51.17, 0.8075, 1.228), -142_694.57, 15_934),
    }
    for c in clv.CANDIDATES:
        params, total, predicted = reference[c.name]
        p, ll = c.fit(s.x, s.t_x, s.T)
        assert p == pytest.approx(np.array(params), rel=2e-3), c.name
        assert ll == pytest.approx(total, abs=0.05), c.name
        assert c.expected(p, s.horizon, s.x, s.t_x, s.T).sum() == pytest.approx(predicted, abs=1.0), c.name
