"""The BG/NBD purchase-behaviour model (Fader, Hardie & Lee, "Counting your customers the easy way",
Marketing Science 2005), fitted with numpy/scipy.

Each customer is three numbers: ``x`` repeat purchases (purchase days after the first), ``t_x`` the
time of the last purchase and ``T`` the time observed, both measured from the first purchase (any
unit, the same for all; cxhub uses days). While alive a customer buys at a Poisson rate (gamma
distributed across customers: ``r``, ``alpha``); after each purchase they drop out with a
probability (beta distributed: ``a``, ``b``). The fit maximises the likelihood; identical
``(x, t_x, T)`` rows are weighted once, so the cost grows with distinct histories, not customers.

Why not a library: pymc-marketing's CLV module brings pymc and pytensor (hundreds of MB, a
compiler at import); lifetimes is unmaintained and pins old pandas. This is the paper's closed
form, checked against lifetimes' published CDNOW estimates in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

Array = NDArray[np.float64]


class FitError(ValueError):
    """The model cannot be fitted on these customers (too few, or no repeat purchase at all)."""


@dataclass(frozen=True)
class BgNbdParams:
    """Fitted parameters: purchase rate ~ Gamma(r, alpha), dropout probability ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BgNbdParams:
        return cls(float(data["r"]), float(data["alpha"]), float(data["a"]), float(data["b"]))


def _arrays(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[Array, Array, Array]:
    xs, ts, Ts = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    return xs, ts, Ts


def log_likelihood(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """Each customer's log-likelihood (the paper's equation 6, in a numerically stable form)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    xs, ts, Ts = _arrays(x, t_x, T)
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + xs) - special.gammaln(b) - special.gammaln(a + b + xs)
    a3 = -(r + xs) * np.log(alpha + Ts)
    repeat = xs > 0
    a4 = np.full_like(xs, -np.inf)
    xr = xs[repeat]
    a4[repeat] = np.log(a) - np.log(b + xr - 1) - (r + xr) * np.log(alpha + ts[repeat])
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=np.float64)


def fit(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    penalizer: float = 0.0,
) -> tuple[BgNbdParams, float]:
    """Maximum-likelihood parameters and the mean log-likelihood per customer.

    ``penalizer`` adds ``penalizer * sum(params**2)`` (as lifetimes does) for small samples.
    Raises :class:`FitError` when there is nothing to learn from.
    """
    xs, ts, Ts = _arrays(x, t_x, T)
    if xs.size == 0:
        raise FitError("no customers to fit the purchase model on")
    if not np.all(np.isfinite(xs) & np.isfinite(ts) & np.isfinite(Ts)):
        raise FitError("x, t_x and T must be finite numbers")
    if np.any(xs < 0) or np.any(ts < 0) or np.any(Ts < ts):
        raise FitError("need x >= 0 and 0 <= t_x <= T for every customer")
    w = np.ones_like(xs) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights is None:
        # one row per distinct history, weighted by how many customers share it
        stacked = np.stack([xs, ts, Ts], axis=1)
        uniq, counts = np.unique(stacked, axis=0, return_counts=True)
        xs, ts, Ts = uniq[:, 0], uniq[:, 1], uniq[:, 2]
        w = counts.astype(np.float64)
    if not np.any(xs > 0):
        raise FitError("no customer bought twice: the purchase model needs repeat purchases")
    total = float(w.sum())
    scale = float(np.mean(Ts[Ts > 0])) if np.any(Ts > 0) else 1.0

    def objective(logp: Array) -> float:
        r, alpha, a, b = np.exp(logp)
        p = BgNbdParams(r, alpha, a, b)
        ll = float(np.dot(w, log_likelihood(p, xs, ts, Ts))) / total
        pen = penalizer * float(np.sum(np.exp(logp) ** 2))
        value = -ll + pen
        return value if np.isfinite(value) else 1e12

    start = np.log(np.array([1.0, scale, 1.0, 1.0]))
    best: Any = None
    for method in ("L-BFGS-B", "Nelder-Mead"):
        if best is not None and best.success:
            break  # Nelder-Mead only polishes a gradient search that stopped short
        res = optimize.minimize(
            objective,
            start if best is None else best.x,
            method=method,
            bounds=[(-12.0, 12.0)] * 4 if method == "L-BFGS-B" else None,
            options={"maxiter": 4000} if method == "Nelder-Mead" else {"maxiter": 2000},
        )
        if best is None or res.fun < best.fun:
            best = res
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    return BgNbdParams(r, alpha, a, b), -float(best.fun)


def _odds_dead(params: BgNbdParams, xs: Array, ts: Array, Ts: Array) -> Array:
    """``a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)`` for x > 0, else 0 (in logs)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    out = np.zeros_like(xs)
    repeat = xs > 0
    xr = xs[repeat]
    log_odds = np.log(a) - np.log(b + xr - 1) + (r + xr) * (np.log(alpha + Ts[repeat]) - np.log(alpha + ts[repeat]))
    out[repeat] = np.exp(np.minimum(log_odds, 700.0))
    return out


def probability_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """P(the customer has not dropped out by T | x, t_x, T) (the paper's equation 12)."""
    xs, ts, Ts = _arrays(x, t_x, T)
    return np.asarray(1.0 / (1.0 + _odds_dead(params, xs, ts, Ts)), dtype=np.float64)


def expected_purchases(params: BgNbdParams, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """Expected purchases in (T, T + t] given the history (the paper's equation 10)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    xs, ts, Ts = _arrays(x, t_x, T)
    if t <= 0:
        return np.zeros_like(xs)
    z = t / (alpha + Ts + t)
    hyp = special.hyp2f1(r + xs, b + xs, a + b + xs - 1, z)
    ratio = np.exp((r + xs) * (np.log(alpha + Ts) - np.log(alpha + Ts + t)))
    a_eff = a if abs(a - 1.0) > 1e-9 else 1.0 + 1e-9
    head = (a + b + xs - 1) / (a_eff - 1)
    value = head * (1.0 - ratio * hyp) / (1.0 + _odds_dead(params, xs, ts, Ts))
    return np.asarray(np.clip(np.nan_to_num(value, nan=0.0, posinf=0.0), 0.0, None), dtype=np.float64)


def expected_purchases_new(params: BgNbdParams, t: ArrayLike) -> Array:
    """Expected purchases of a new customer in (0, t] (the paper's equation 7)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    ts = np.asarray(t, dtype=np.float64)
    a_eff = a if abs(a - 1.0) > 1e-9 else 1.0 + 1e-9
    hyp = special.hyp2f1(r, b, a + b - 1, ts / (alpha + ts))
    return np.asarray((a + b - 1) / (a_eff - 1) * (1 - (alpha / (alpha + ts)) ** r * hyp), dtype=np.float64)


def probability_no_purchase(params: BgNbdParams, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """P(no purchase in (T, T + t] | history): dropped out already, or alive and no Poisson arrival
    (a BG/NBD customer drops out only right after a purchase, so not within a silent window)."""
    xs, ts, Ts = _arrays(x, t_x, T)
    alive = probability_alive(params, xs, ts, Ts)
    silent = np.exp((params.r + xs) * (np.log(params.alpha + Ts) - np.log(params.alpha + Ts + t)))
    return np.asarray((1.0 - alive) + alive * silent, dtype=np.float64)


def probability_no_purchase_new(params: BgNbdParams, t: float) -> float:
    """P(no purchase in the first ``t`` after the first one) for a customer with nothing else known."""
    return float((params.alpha / (params.alpha + t)) ** params.r)
