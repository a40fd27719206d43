"""The customers feature's goals, measured: the purchase model on CDNOW, the planted effect, and
scoring at scale on PostgreSQL.

1. **CDNOW** (tests/data/cdnow, 23,570 customers, 1997-01..1998-06): calibrate on weeks 1-39,
   predict weeks 40-78; the total of repeat transactions against the actual, per-customer MAE
   against the naive baseline (the calibration rate carried forward), AUC of "no purchase in the
   holdout" against the RFM-score baseline, for cxhub's BG/NBD and the candidates measured beside
   it (Pareto/NBD, MBG/NBD; the one chosen by the calibration's log-likelihood), on the whole data
   (days) and on Fader & Hardie's 1/10 sample (weeks). The same figures for lifetimes'
   BetaGeoFitter when ``--lifetimes-python`` names a Python that has it (a venv of its own: it pins
   old pandas and is not a dependency of cxhub; it also ships the 1/10 sample), and for
   pymc-marketing's three models when ``--pymc-python`` names one with pymc-marketing.
2. **Planted effect**: synthetic customers where those with breached cases churn more
   (:func:`hub.features.customers.evaluation.planted_effect`), through the real ingest and
   scoring on SQLite; the AUC of the risk score for the planted at-risk customers.
3. **Scale**: ``--customers`` customers with ``--transactions`` transactions on average, generated
   with ``generate_series`` in a dedicated PostgreSQL database (``cxhub_bench_clv``), scored by
   the real job; wall time and peak RSS of this process (PostgreSQL's own memory is its own).

    .venv/bin/python bench/clv.py --lifetimes-python /tmp/lifetimes-venv/bin/python --pymc-python /tmp/pymc-venv/bin/python
    .venv/bin/python bench/clv.py --only scale --customers 1000000 --transactions 20
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hub.features.customers import evaluation as ev  # noqa: E402

CDNOW = ROOT / "tests" / "data" / "cdnow" / "CDNOW_master.txt.gz"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "cxhub_bench_clv"
Array = NDArray[np.float64]

LIFETIMES = """
import json, sys, numpy as np, pandas as pd
from lifetimes import BetaGeoFitter
from lifetimes.utils import calibration_and_holdout_data
# lifetimes' own data preparation of the raw file (the docs' recipe, freq="D"); the monetary column
# is only there because lifetimes 0.11.3's holdout count needs a value column on pandas >= 2
raw = pd.read_csv(sys.argv[1], sep=r"\\s+", header=0, names=["id", "date", "cds", "dollars"], dtype={"id": str, "date": str})
raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
s = calibration_and_holdout_data(raw, "id", "date", calibration_period_end="1997-09-30",
                                 observation_period_end="1998-06-30", freq="D", monetary_value_col="dollars")
x, t_x, T = (s[c].to_numpy(float) for c in ("frequency_cal", "recency_cal", "T_cal"))
horizon = float(s["duration_holdout"].iloc[0])
m = BetaGeoFitter(penalizer_coef=0.0)
m.fit(x, t_x, T)
e = m.conditional_expected_number_of_purchases_up_to_time(horizon, x, t_x, T)
np.savez(sys.argv[2], ids=s.index.to_numpy(str), x=x, t_x=t_x, T=T, holdout=s["frequency_holdout"].to_numpy(float),
         horizon=horizon, expected=np.asarray(e, dtype=float))
print(json.dumps({k: float(v) for k, v in m.params_.items()}))
"""


PYMC = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from pymc_extras.prior import Prior
from pymc_marketing import clv
d = np.load(sys.argv[1])
data = pd.DataFrame({"customer_id": np.arange(d["x"].size), "frequency": d["x"], "recency": d["t_x"], "T": d["T"]})
out, params = {}, {}
for key, model, names in (("BG/NBD", clv.BetaGeoModel, "r alpha a b"), ("Pareto/NBD", clv.ParetoNBDModel, "r alpha s beta"),
                          ("MBG/NBD", clv.ModifiedBetaGeoModel, "r alpha a b")):
    # flat priors: the maximum a posteriori is the maximum-likelihood estimate
    m = model(data=data, model_config={k: Prior("HalfFlat") for k in names.split()})
    m.fit(fit_method="map", progressbar=False)
    params[key] = [float(m.idata.posterior[k].mean()) for k in names.split()]
    e = m.expected_purchases(data=data, future_t=float(d["horizon"]))
    out[key.replace("/", "_")] = np.asarray(e.mean(("chain", "draw")).values, dtype=float)
np.savez(sys.argv[2], **out)
print(json.dumps(params))
"""


def _params(c: Candidate, p: Array) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in zip(c.names, p, strict=True))


def measure(s: ev.Split, label: str, unit: str) -> dict[str, tuple[Array, float, ev.Figures]]:
    """Every candidate fitted on the calibration and scored on the holdout; the one chosen on the
    calibration alone (highest log-likelihood; four parameters each, so BIC ranks the same)."""
    n = len(s.x)
    out: dict[str, tuple[Array, float, ev.Figures]] = {}
    for c in CANDIDATES:
        t0 = time.perf_counter()
        p, ll = c.fit(s.x, s.t_x, s.T)
        fig = figures(c, s, p)
        took = time.perf_counter() - t0
        print(
            f"{label} {c.name} (per {unit}): {_params(c, p)}; calibration log-likelihood {ll:,.2f}, "
            f"BIC {-2 * ll + 4 * np.log(n):,.1f}; fit and predict {took:.2f}s"
        )
        for line in fig.lines(c.name):
            print("  " + line)
        out[c.name] = (p, ll, fig)
    chosen = max(out, key=lambda k: out[k][1])
    fig = out[chosen][2]
    print(
        f"{label}: chosen on the calibration (highest log-likelihood, lowest BIC): {chosen}; its holdout total "
        f"{fig.total_error:+.1%} ({'met' if abs(fig.total_error) <= 0.05 else 'not met'}), MAE "
        f"{'below' if fig.mae < fig.naive_mae else 'not below'} naive, AUC by expected purchases "
        f"{'at least' if fig.auc_expected >= fig.rfm_auc_no_purchase else 'below'} RFM's; candidates within ±5%: "
        f"{', '.join(k for k, v in out.items() if abs(v[2].total_error) <= 0.05) or 'none'}"
    )
    return out


def pymc_reference(python: str, s: ev.Split, label: str, ours: dict[str, tuple[Array, float, ev.Figures]]) -> None:
    """pymc-marketing's BetaGeoModel, ParetoNBDModel and ModifiedBetaGeoModel on the same summaries
    (flat priors, maximum a posteriori = maximum likelihood), their own holdout expectations."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "in.npz", x=s.x, t_x=s.t_x, T=s.T, horizon=s.horizon)
        t0 = time.perf_counter()
        done = subprocess.run(
            [python, "-c", PYMC, str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.npz")], capture_output=True, text=True
        )
        took = time.perf_counter() - t0
        if done.returncode != 0:
            print(f"{label} pymc-marketing: failed: {done.stderr.strip().splitlines()[-1:]}")
            return
        params = json.loads(done.stdout.strip().splitlines()[-1])
        got = dict(np.load(Path(tmp) / "out.npz"))
    version = subprocess.run(
        [python, "-c", "import pymc_marketing; print(pymc_marketing.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"{label} pymc-marketing {version} (the reference library; fit and predict of the three {took:.1f}s, process included):"
    )
    for c in CANDIDATES:
        p = np.array(params[c.name])
        fig = figures(c, s, p, predicted=got[c.name.replace("/", "_")])
        print(
            f"  {c.name}: {_params(c, p)}; calibration log-likelihood {float(np.sum(c.loglik(p, s.x, s.t_x, s.T))):,.2f}"
        )
        for line in fig.lines(f"pymc-marketing {c.name}"):
            print("    " + line)
        mine = ours[c.name][2]
        print(
            f"    cxhub / pymc-marketing: total {mine.predicted_total / fig.predicted_total:.4f}, MAE {mine.mae / fig.mae:.4f}"
        )


def cdnow(lifetimes_python: str | None, pymc_python: str | None) -> None:
    purchases = ev.load_cdnow(str(CDNOW))
    s = ev.split(purchases, ev.CDNOW_CALIBRATION_END, ev.CDNOW_HOLDOUT_END)
    print(
        f"CDNOW: {len(s.x):,} customers, {int(s.x.sum()):,} repeat purchase days in weeks 1-39 "
        f"(T {s.T.min():.0f}-{s.T.max():.0f} days, to 1997-09-30), "
        f"{int(s.holdout.sum()):,} repeat purchase days in weeks 40-78 ({s.horizon:.0f} days, to 1998-06-30)"
    )
    ours = measure(s, "CDNOW", "day")
    # the unit: continuous-time models are the same model in any unit (alpha, beta scale with it)
    weeks = ev.Split(s.x, s.t_x / 7, s.T / 7, s.spend, s.holdout, s.horizon / 7, s.customers)
    for c in CANDIDATES:
        p, _ = c.fit(weeks.x, weeks.t_x, weeks.T)
        in_days = c.expected(ours[c.name][0], s.horizon, s.x, s.t_x, s.T)
        diff = np.max(np.abs(c.expected(p, weeks.horizon, weeks.x, weeks.t_x, weeks.T) - in_days))
        print(f"CDNOW {c.name} fitted in weeks: {_params(c, p)}; largest change of a customer's forecast {diff:.1e}")
    if pymc_python:
        pymc_reference(pymc_python, s, "CDNOW", ours)
    else:
        print("pymc-marketing: not measured (give --pymc-python)")
    if not lifetimes_python:
        print("lifetimes: not measured (give --lifetimes-python)")
        return
    lifetimes_bgnbd(lifetimes_python, s, ours["BG/NBD"][2])
    hardie_sample(lifetimes_python, pymc_python)


def lifetimes_bgnbd(lifetimes_python: str, s: ev.Split, ours: ev.Figures) -> None:
    """lifetimes' BetaGeoFitter on its own preparation of the raw file."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        t0 = time.perf_counter()
        done = subprocess.run([lifetimes_python, "-c", LIFETIMES, str(CDNOW), str(out)], capture_output=True, text=True)
        took = time.perf_counter() - t0
        if done.returncode != 0:
            print(f"lifetimes: failed: {done.stderr.strip().splitlines()[-1:]}")
            return
        params = json.loads(done.stdout.strip().splitlines()[-1])
        got = dict(np.load(out))
    # lifetimes prepared the raw file itself: the same customers and summaries as cxhub's split?
    row = {c: i for i, c in enumerate(s.customers)}
    order = np.array([row[str(c)] for c in got["ids"]])
    same = np.all(np.stack([got[k] == getattr(s, k)[order] for k in ("x", "t_x", "T", "holdout")]), axis=0)
    print(
        f"lifetimes' own preparation (calibration_and_holdout_data, freq='D'): {len(order):,} customers, "
        f"{int(got['x'].sum()):,} repeat days in weeks 1-39, {int(got['holdout'].sum()):,} in weeks 40-78, "
        f"horizon {float(got['horizon']):.0f} days; (x, t_x, T, holdout) equal to cxhub's for "
        f"{int(same.sum()):,} of {len(order):,} customers"
    )
    theirs_split = ev.Split(
        got["x"],
        got["t_x"],
        got["T"],
        s.spend[order],
        got["holdout"],
        float(got["horizon"]),
        [str(c) for c in got["ids"]],
    )
    # P(no purchase in the holdout) from lifetimes' own parameters (it has no such method)
    from hub.features.customers import bgnbd

    lp = bgnbd.BgNbdParams(params["r"], params["alpha"], params["a"], params["b"])
    p_none = bgnbd.probability_no_purchase(lp, theirs_split.horizon, got["x"], got["t_x"], got["T"])
    theirs = ev.evaluate(theirs_split, got["expected"], p_none, params)
    print(
        f"lifetimes BetaGeoFitter: r={lp.r:.4f} alpha={lp.alpha:.3f} a={lp.a:.4f} b={lp.b:.4f}, "
        f"prepare, fit and predict {took:.2f}s (process included)"
    )
    for line in theirs.lines("lifetimes"):
        print("  " + line)
    print(
        f"  cxhub / lifetimes: total {ours.predicted_total / theirs.predicted_total:.4f}, MAE {ours.mae / theirs.mae:.4f}"
    )


def hardie_sample(lifetimes_python: str, pymc_python: str | None) -> None:
    """The paper's own data: the 1/10 sample (2,357 customers) and Fader & Hardie's published
    calibration summary (weeks), both shipped in lifetimes' datasets. cxhub's split of the sample's
    event log against the published summary, then every candidate in weeks against the published
    estimates (BG/NBD r 0.243, alpha 4.414, a 0.793, b 2.426, log-likelihood -9582.4; Pareto/NBD
    r 0.553, alpha 10.578, s 0.606, beta 11.669, log-likelihood -9595.0)."""
    import csv
    import datetime as dt

    where = subprocess.run(
        [lifetimes_python, "-c", "import lifetimes, os; print(os.path.dirname(lifetimes.__file__))"],
        capture_output=True,
        text=True,
    )
    datasets = Path(where.stdout.strip()) / "datasets"
    if where.returncode != 0 or not (datasets / "CDNOW_sample.txt").exists():
        print("Fader & Hardie's 1/10 sample: not found in lifetimes' datasets")
        return
    start = dt.date(1997, 1, 1)
    log = []
    for line in (datasets / "CDNOW_sample.txt").read_text().splitlines():
        _, cid, d, _, dollars = line.split()
        log.append((cid, (dt.date(int(d[:4]), int(d[4:6]), int(d[6:])) - start).days, float(dollars)))
    s = ev.split(log, ev.CDNOW_CALIBRATION_END, ev.CDNOW_HOLDOUT_END)
    with (datasets / "cdnow_customers_summary.csv").open() as fh:
        published = {r["ID"]: r for r in csv.DictReader(fh)}
    same = sum(
        1
        for i, c in enumerate(s.customers)
        if str(int(c)) in published
        and float(published[str(int(c))]["frequency"]) == s.x[i]
        and float(published[str(int(c))]["recency"]) == round(s.t_x[i] / 7, 2)
        and float(published[str(int(c))]["T"]) == round(s.T[i] / 7, 2)
    )
    print(
        f"Fader & Hardie's 1/10 sample: {len(s.x):,} customers, cxhub's split equals the published calibration "
        f"summary (x, t_x, T in weeks) for {same:,} of {len(published):,}; "
        f"{int(s.holdout.sum()):,} repeat purchase days in weeks 40-78"
    )
    weeks = ev.Split(s.x, s.t_x / 7, s.T / 7, s.spend, s.holdout, s.horizon / 7, s.customers)
    ours = measure(weeks, "sample", "week")
    if pymc_python:
        pymc_reference(pymc_python, weeks, "sample", ours)


# ------------------------------------------------------------------ candidate models
# Measured here, not shipped: Pareto/NBD and MBG/NBD beside cxhub's BG/NBD, each fitted by maximum
# likelihood on the calibration (tests/features/customers/test_candidate_models.py checks them
# against published estimates, quadrature and data simulated from each model).


def _distinct(x: Array, t_x: Array, T: Array) -> tuple[Array, Array, Array, Array]:
    """One row per distinct (x, t_x, T) history and how many customers share it."""
    uniq, counts = np.unique(np.stack([x, t_x, T], axis=1), axis=0, return_counts=True)
    return uniq[:, 0], uniq[:, 1], uniq[:, 2], counts.astype(np.float64)


def _mle(loglik: Callable[[Array, Array, Array, Array], Array], x: Array, t_x: Array, T: Array) -> tuple[Array, float]:
    """Maximum likelihood over four positive parameters (in logs): L-BFGS-B, then a Nelder-Mead
    polish, from (1, mean T, 1, 1) as cxhub's BG/NBD fit."""
    from scipy import optimize

    xs, ts, Ts, w = _distinct(x, t_x, T)
    total = float(w.sum())

    def objective(logp: Array) -> float:
        with np.errstate(all="ignore"):
            value = -float(np.dot(w, loglik(np.exp(logp), xs, ts, Ts))) / total
        return value if np.isfinite(value) else 1e12

    scale = float(np.mean(Ts[Ts > 0]))
    best = optimize.minimize(objective, np.log([1.0, scale, 1.0, 1.0]), method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    polish = optimize.minimize(objective, best.x, method="Nelder-Mead", options={"maxiter": 4000, "fatol": 1e-12})
    if polish.fun < best.fun:
        best = polish
    return np.exp(best.x), -float(best.fun) * total


def pnbd_log_tail(alpha: float, beta: float, p: Array, q: float, t: Array) -> Array:
    """``log int_t^inf (alpha + tau)^-p (beta + tau)^-q dtau`` (``p + q > 1``, ``t >= 0``).

    Fader & Hardie write it with ``2F1(p + q - 1, q; p + q; (alpha - beta) / (alpha + t))``, whose
    value explodes as the argument nears 1 (their note on implementing the model in MATLAB). After
    Euler's transformation it is ``(big + t)^-p_big (small + t)^(1 - p_small) 2F1(1, p_big;
    p + q; (big - small) / (big + t)) / (p + q - 1)``, with the larger of alpha and beta as ``big``:
    a series of positive terms, argument in [0, 1), evaluated in logs."""
    from scipy import special

    if alpha >= beta:
        big, small, p_big, p_small = alpha, beta, p, np.full_like(p, q)
    else:
        big, small, p_big, p_small = beta, alpha, np.full_like(p, q), p
    hyp = special.hyp2f1(1.0, p_big, p_big + p_small, (big - small) / (big + t))
    return np.asarray(
        -p_big * np.log(big + t) + (1.0 - p_small) * np.log(small + t) + np.log(hyp) - np.log(p_big + p_small - 1.0)
    )


def _pnbd_log_between(alpha: float, beta: float, p: Array, q: float, lo: Array, hi: Array) -> Array:
    """``log int_lo^hi (alpha + tau)^-p (beta + tau)^-q dtau``, ``-inf`` where ``lo >= hi``."""
    g_lo = pnbd_log_tail(alpha, beta, p, q, lo)
    gap = np.minimum(pnbd_log_tail(alpha, beta, p, q, hi) - g_lo, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(np.where(hi > lo, g_lo + np.log(-np.expm1(gap)), -np.inf))


def _pnbd_parts(p: Array, x: Array, t_x: Array, T: Array) -> tuple[Array, Array]:
    """In logs: alive at T, and dropped out in (t_x, T] (without Gamma(r+x) alpha^r beta^s / Gamma(r))."""
    r, alpha, s, beta = p
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    return np.asarray(alive), np.log(s) + _pnbd_log_between(alpha, beta, r + x, s + 1.0, t_x, T)


def pnbd_loglik(p: Array, x: Array, t_x: Array, T: Array) -> Array:
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): each customer's log-likelihood."""
    from scipy import special

    r, alpha, s, beta = p
    alive, dead = _pnbd_parts(p, x, t_x, T)
    head = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return np.asarray(head + np.logaddexp(alive, dead))


def pnbd_alive(p: Array, x: Array, t_x: Array, T: Array) -> Array:
    alive, dead = _pnbd_parts(p, x, t_x, T)
    return np.asarray(np.exp(alive - np.logaddexp(alive, dead)))


def pnbd_expected(p: Array, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
    """P(alive) (r + x)(beta + T) / ((alpha + T)(s - 1)) (1 - ((beta + T) / (beta + T + t))^(s - 1))."""
    r, alpha, s, beta = p
    span = np.log1p(t / (beta + T))
    factor = span if abs(s - 1.0) < 1e-9 else -np.expm1(-(s - 1.0) * span) / (s - 1.0)
    return np.asarray(pnbd_alive(p, x, t_x, T) * (r + x) * (beta + T) / (alpha + T) * factor)


def pnbd_no_purchase(p: Array, t: float, x: Array, t_x: Array, T: Array) -> Array:
    """1 - P(alive) P(a purchase in (T, T + t] | alive); alive at T, lambda ~ Gamma(r + x, alpha + T)
    and mu ~ Gamma(s, beta + T), and the purchase comes first with probability
    (r + x)(alpha + T)^(r + x)(beta + T)^s int_T^(T + t) (alpha + tau)^-(r + x + 1)(beta + tau)^-s dtau."""
    r, alpha, s, beta = p
    log_buy = (
        np.log(r + x)
        + (r + x) * np.log(alpha + T)
        + s * np.log(beta + T)
        + _pnbd_log_between(alpha, beta, r + x + 1.0, s, T, T + t)
    )
    return np.asarray(1.0 - pnbd_alive(p, x, t_x, T) * np.clip(np.exp(log_buy), 0.0, 1.0))


def mbg_loglik(p: Array, x: Array, t_x: Array, T: Array) -> Array:
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): BG/NBD where a customer may also drop out
    right after the first purchase, so a customer with no repeat purchase can be gone."""
    from scipy import special

    r, alpha, a, b = p
    head = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    beta = special.gammaln(a + b) + special.gammaln(b + x + 1) - special.gammaln(b) - special.gammaln(a + b + x + 1)
    gone = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + t_x)
    return np.asarray(head + beta + np.logaddexp(-(r + x) * np.log(alpha + T), gone))


def mbg_alive(p: Array, x: Array, t_x: Array, T: Array) -> Array:
    r, alpha, a, b = p
    log_odds = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.asarray(1.0 / (1.0 + np.exp(np.minimum(log_odds, 700.0))))


def mbg_expected(p: Array, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
    """(a + b + x)/(a - 1) (1 - ((alpha + T)/(alpha + T + t))^(r + x) 2F1(r + x, b + x + 1; a + b + x;
    t / (alpha + T + t))) P(alive) (Batislam et al.'s conditional expectation)."""
    from scipy import special

    r, alpha, a, b = p
    hyp = special.hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T + t))
    ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return np.asarray((a + b + x) / (a - 1) * (1.0 - ratio * hyp) * mbg_alive(p, x, t_x, T))


def mbg_no_purchase(p: Array, t: float, x: Array, t_x: Array, T: Array) -> Array:
    """Gone already, or alive and no Poisson arrival (drop-outs happen only at purchases)."""
    r, alpha = p[0], p[1]
    alive = mbg_alive(p, x, t_x, T)
    return np.asarray(1.0 - alive + alive * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))))


@dataclass(frozen=True)
class Candidate:
    """A model of the BG/NBD class: its parameters' names and its fit and predictions."""

    name: str
    names: tuple[str, str, str, str]
    loglik: Callable[[Array, Array, Array, Array], Array]
    expected: Callable[[Array, float | Array, Array, Array, Array], Array]
    no_purchase: Callable[[Array, float, Array, Array, Array], Array]

    def fit(self, x: Array, t_x: Array, T: Array) -> tuple[Array, float]:
        if self.name == "BG/NBD":  # cxhub's own fit, the shipped one
            from hub.features.customers import bgnbd

            params, mean_ll = bgnbd.fit(x, t_x, T)
            return np.array([params.r, params.alpha, params.a, params.b]), mean_ll * x.size
        return _mle(self.loglik, x, t_x, T)


def _bg(p: Array) -> Any:
    from hub.features.customers import bgnbd

    return bgnbd.BgNbdParams(*(float(v) for v in p))


def _bg_loglik(p: Array, x: Array, t_x: Array, T: Array) -> Array:
    from hub.features.customers import bgnbd

    return bgnbd.log_likelihood(_bg(p), x, t_x, T)


def _bg_expected(p: Array, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
    from hub.features.customers import bgnbd

    if np.ndim(t):  # the unconditional curve of a customer seen at the first purchase (x = t_x = T = 0)
        return bgnbd.expected_purchases_new(_bg(p), t)
    return bgnbd.expected_purchases(_bg(p), float(t), x, t_x, T)


def _bg_no_purchase(p: Array, t: float, x: Array, t_x: Array, T: Array) -> Array:
    from hub.features.customers import bgnbd

    return bgnbd.probability_no_purchase(_bg(p), t, x, t_x, T)


CANDIDATES = (
    Candidate("BG/NBD", ("r", "alpha", "a", "b"), _bg_loglik, _bg_expected, _bg_no_purchase),
    Candidate("Pareto/NBD", ("r", "alpha", "s", "beta"), pnbd_loglik, pnbd_expected, pnbd_no_purchase),
    Candidate("MBG/NBD", ("r", "alpha", "a", "b"), mbg_loglik, mbg_expected, mbg_no_purchase),
)


def figures(c: Candidate, s: ev.Split, p: Array, predicted: Array | None = None) -> ev.Figures:
    """The goals' figures of a candidate with parameters ``p`` on a split (``predicted``: another
    implementation's expected holdout purchases, else the candidate's own)."""
    if predicted is None:
        predicted = c.expected(p, s.horizon, s.x, s.t_x, s.T)
    p_none = c.no_purchase(p, s.horizon, s.x, s.t_x, s.T)
    naive = np.where(s.T > 0, s.x / np.maximum(s.T, 1e-9), 0.0) * s.horizon
    none = s.holdout == 0
    zeros = np.zeros_like(s.T)
    # the tracking figure: each customer's unconditional expectation from the first purchase
    tracking = c.expected(p, s.T + s.horizon, zeros, zeros, zeros)
    return ev.Figures(
        predicted_total=float(predicted.sum()),
        actual_total=float(s.holdout.sum()),
        total_error=float(predicted.sum() / s.holdout.sum() - 1),
        mae=float(np.mean(np.abs(predicted - s.holdout))),
        naive_mae=float(np.mean(np.abs(naive - s.holdout))),
        auc_no_purchase=ev.auc(p_none, none),
        auc_expected=ev.auc(-predicted, none),
        rfm_auc_no_purchase=ev.auc(-ev.rfm_score(s), none),
        params=dict(zip(c.names, (float(v) for v in p), strict=True)),
        tracking_predicted=float(tracking.sum()),
        tracking_actual=float(s.x.sum() + s.holdout.sum()),
    )


def planted(n: int) -> None:
    import yaml
    from features.customers.conftest import config, feed
    from kit.runtime import build_runtime
    from sqlalchemy import select

    from hub.features.customers.schema import customer_scores
    from hub.sdk.testing import FakeClock
    from hub.store.schema import identities

    now = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
    records, at_risk = ev.planted_effect(n, now)
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock(now)
        cfg = config(f"sqlite:///{tmp}/cx.db")
        cfg["feedback"] = {"sla": {"high": {"ack": "10m", "resolve": "1h"}, "medium": {"ack": "10m", "resolve": "1h"}}}
        rt = build_runtime(yaml.safe_dump(cfg, allow_unicode=True), path=Path(tmp) / "cxhub.yaml", clock=clock)
        try:
            for r in sorted((r for r in records if r["kind"] == "review"), key=lambda r: r["at"]):
                clock.set(datetime.fromisoformat(r["at"]))
                feed(rt, r)
            clock.set(now)
            rest = [r for r in records if r["kind"] != "review"]
            for i in range(0, len(rest), 5000):
                feed(rt, *rest[i : i + 5000])
            report = rt.features["customers"].score()
            with rt.store.connect() as conn:
                member_of = {
                    c: v
                    for v, c in conn.execute(
                        select(identities.c.value, identities.c.customer_id).where(
                            identities.c.namespace == "member_id"
                        )
                    )
                }
                rows = conn.execute(
                    select(customer_scores.c.customer_id, customer_scores.c.risk, customer_scores.c.p_alive)
                )
                got = [(member_of[c], r, a) for c, r, a in rows]
        finally:
            rt.close()
    risk = np.array([r for _, r, _ in got])
    label = np.array([m in at_risk for m, _, _ in got])
    alive = np.array([a if a is not None else 1.0 for _, _, a in got])
    print(
        f"planted effect: {len(got):,} customers, {int(label.sum())} with a breached case (80% of them stop buying), "
        f"{report.customers} scored"
    )
    print(f"  risk score AUC for the planted at-risk customers: {ev.auc(risk, label):.4f} (goal >= 0.8)")
    print(f"  the purchase model alone (1 - P(alive)): {ev.auc(1 - alive, label):.4f}")


GENERATE = """
INSERT INTO customers (id, created_at, opted_out)
SELECT md5('c' || i)::uuid::text, now(), false FROM generate_series(1, {n}) AS i;
INSERT INTO touchpoints (id, source, external_id, kind, channel, occurred_at, received_at, customer_id, store, doc)
SELECT md5('t' || g)::uuid::text, 'bench', 't' || g, 'transaction', 'pos', at, at,
       md5('c' || c)::uuid::text, 'S' || lpad((c % 500)::text, 3, '0'),
       json_build_object('order', json_build_object('amount', (5 + g % 300)::text || '.50'))
FROM (
    SELECT g, 1 + floor({n} * power(random(), 1.3))::int AS c, now() - random() * interval '730 days' AS at
    FROM generate_series(1, {tx}) AS g
) s;
INSERT INTO touchpoints (id, source, external_id, kind, channel, occurred_at, received_at, customer_id, store, doc)
SELECT md5('r' || i)::uuid::text, 'bench', 'r' || i, 'review', 'app', at, at, md5('c' || i)::uuid::text, 'S001',
       json_build_object('feedback', json_build_object('nps', i % 11, 'text', '还行', 'topics', json_build_array('服务')))
FROM (SELECT i, now() - random() * interval '300 days' AS at FROM generate_series(1, {n}, 20) AS i) s;
"""


def scale(customers: int, per_customer: int, regenerate: bool) -> None:
    from sqlalchemy import create_engine, text

    from hub.features.customers.config import CustomersConfig
    from hub.features.customers.job import Scoring
    from hub.features.customers.scoring import SignalScorer
    from hub.store import Store

    tx = customers * per_customer
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    url = f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}"
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": BENCH_DB}).first()
    store = None
    if exists and not regenerate:
        store = Store(url)
        with store.connect() as conn:
            have = conn.execute(text("SELECT count(*) FROM customers")).scalar()
        if have != customers:
            store.dispose()
            store = None
    if store is None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
        store = Store(url)
        store.migrate()
        t0 = time.perf_counter()
        with store.begin() as conn:
            for idx in ("ix_touchpoints_source_occurred", "ix_touchpoints_kind_occurred", "ix_touchpoints_customer"):
                conn.execute(text(f"DROP INDEX {idx}"))
        with store.begin() as conn:
            conn.execute(text(GENERATE.format(n=customers, tx=tx)))
        with store.begin() as conn:  # the indexes the store has, built after the load
            conn.execute(text("CREATE INDEX ix_touchpoints_source_occurred ON touchpoints (source, occurred_at)"))
            conn.execute(text("CREATE INDEX ix_touchpoints_kind_occurred ON touchpoints (kind, occurred_at)"))
            conn.execute(text("CREATE INDEX ix_touchpoints_customer ON touchpoints (customer_id)"))
        vacuum = create_engine(url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
        with vacuum.connect() as conn:
            conn.execute(text("VACUUM ANALYZE touchpoints"))
            conn.execute(text("VACUUM ANALYZE customers"))
        vacuum.dispose()
        print(f"scale: generated {customers:,} customers, {tx:,} transactions in {time.perf_counter() - t0:.0f}s")
    with store.connect() as conn:
        n_tx = conn.execute(text("SELECT count(*) FROM touchpoints WHERE kind = 'transaction'")).scalar()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"scale: machine load average before the run {' '.join(load)} (2 cores, shared)")
    cfg = CustomersConfig()
    scoring = Scoring(cfg, store, SignalScorer(cfg.weights, min_purchases=cfg.min_purchases))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    report = scoring.run()
    took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.dispose()
    m = report.model or {}
    print(
        f"scale: scored {report.customers:,} customers ({n_tx:,} transactions) in {took:.1f}s "
        f"({report.customers / took:,.0f} customers/s; the model's fit {report.fit_seconds:.1f}s of it); peak RSS {peak:.0f} MB (before the run {before:.0f} MB); "
        f"model fitted on {m.get('customers', 0):,} customers; {report.at_risk:,} at risk, "
        f"{report.insufficient:,} insufficient history"
    )
    if customers < 1_000_000:
        factor = 1_000_000 / customers
        print(
            f"scale: linear extrapolation to 1,000,000 customers / {20 * 1_000_000:,} transactions: "
            f"{took * factor / 60:.1f} min (goal < 10 min); memory is bounded by the batch, not the customers"
        )


def main() -> None:
    import logging

    logging.getLogger("cxhub.feedback").setLevel(logging.ERROR)  # the synthetic cases have nobody to notify
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["cdnow", "planted", "scale"], action="append")
    ap.add_argument(
        "--lifetimes-python", help="a Python with lifetimes installed (BG/NBD's reference; the 1/10 sample)"
    )
    ap.add_argument("--pymc-python", help="a Python with pymc-marketing installed (every candidate's reference)")
    ap.add_argument("--planted", type=int, default=2000, help="synthetic customers of the planted effect")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--transactions", type=int, default=20, help="per customer, on average")
    ap.add_argument("--regenerate", action="store_true", help="generate the scale data again")
    args = ap.parse_args()
    parts = args.only or ["cdnow", "planted", "scale"]
    if "cdnow" in parts:
        cdnow(args.lifetimes_python, args.pymc_python)
    if "planted" in parts:
        planted(args.planted)
    if "scale" in parts:
        scale(args.customers, args.transactions, args.regenerate)


if __name__ == "__main__":
    main()
