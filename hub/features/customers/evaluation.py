"""How well the purchase model predicts: a calibration / holdout split of transaction histories,
the model's predictions, the naive and RFM baselines, and the figures (used by bench/clv.py and
the tests, on the public CDNOW data set and on synthetic data).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from hub.features.customers import bgnbd


@dataclass
class Split:
    """Per customer: calibration summary (days) and holdout purchase days."""

    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    spend: NDArray[np.float64]
    holdout: NDArray[np.float64]
    horizon: float
    customers: list[str] = field(default_factory=list)  # the customer of each row


def split(purchases: Iterable[tuple[str, int, float]], calibration_end: int, holdout_end: int) -> Split:
    """The literature's calibration / holdout summary (Fader, Hardie & Lee 2005; lifetimes'
    ``calibration_and_holdout_data(..., freq="D")``; BTYD's ``dc.MergeTransactionsOnSameDate``).

    ``purchases``: (customer, day number, amount). Days ``< calibration_end`` calibrate, days in
    ``[calibration_end, holdout_end)`` are the holdout. Several purchases of a customer on one day
    count as one; the first purchase is not a repeat (``x`` counts the purchase days after it);
    ``t_x`` and ``T`` run from the first purchase to the last purchase and to the calibration's
    last day (``calibration_end - 1``: the convention of the published CDNOW summary, where a
    customer first seen on the first day has T = 38.86 weeks); the holdout counts purchase days.
    Customers whose first purchase is after the calibration are left out."""
    days: dict[str, set[int]] = defaultdict(set)
    spend: dict[str, float] = defaultdict(float)
    for cid, day, amount in purchases:
        days[cid].add(day)
        if day < calibration_end:
            spend[cid] += amount
    last_day = calibration_end - 1
    x, tx, T, sp, hold, ids = [], [], [], [], [], []
    for cid, ds in days.items():
        cal = sorted(d for d in ds if d < calibration_end)
        if not cal:
            continue
        ids.append(cid)
        x.append(len(cal) - 1)
        tx.append(cal[-1] - cal[0])
        T.append(last_day - cal[0])
        sp.append(spend[cid])
        hold.append(sum(1 for d in ds if calibration_end <= d < holdout_end))
    a = [np.asarray(v, dtype=np.float64) for v in (x, tx, T, sp, hold)]
    return Split(a[0], a[1], a[2], a[3], a[4], horizon=float(holdout_end - calibration_end), customers=ids)


def auc(score: NDArray[np.float64], label: NDArray[np.bool_]) -> float:
    """Area under the ROC curve of ``score`` for ``label`` (Mann-Whitney, ties averaged)."""
    pos = int(label.sum())
    neg = int(label.size - pos)
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def rfm_score(s: Split) -> NDArray[np.float64]:
    """The RFM baseline: recency, frequency and monetary quintiles (1-5 each), summed."""

    def quintile(v: NDArray[np.float64]) -> NDArray[np.float64]:
        r = stats.rankdata(v) / v.size
        return np.ceil(r * 5)

    recency = -(s.T - s.t_x)  # more recent is better
    return quintile(recency) + quintile(s.x) + quintile(s.spend)


@dataclass
class Figures:
    """The goals' figures for one model on one split."""

    predicted_total: float
    actual_total: float
    total_error: float  # predicted / actual - 1
    mae: float
    naive_mae: float
    auc_no_purchase: float  # ranked by P(no purchase in the holdout)
    auc_expected: float  # ranked by fewest expected purchases
    rfm_auc_no_purchase: float
    params: dict[str, float]
    # the paper's cumulative tracking plot: expected repeat purchase days of the cohort over the
    # calibration and the holdout (unconditional, from each customer's first purchase) vs actual
    tracking_predicted: float = float("nan")
    tracking_actual: float = float("nan")

    def lines(self, name: str) -> list[str]:
        return [
            f"{name}: predicted repeat transactions {self.predicted_total:,.0f} vs actual {self.actual_total:,.0f} "
            f"({self.total_error:+.1%}; goal within ±5%)",
            f"{name}: per-customer MAE {self.mae:.4f} vs naive baseline {self.naive_mae:.4f} "
            f"(ratio {self.mae / self.naive_mae:.3f}; goal < 1)",
            f"{name}: AUC 'no purchase in the holdout' by P(none) {self.auc_no_purchase:.4f}, "
            f"by expected purchases {self.auc_expected:.4f} vs RFM {self.rfm_auc_no_purchase:.4f} (goal >=)",
            f"{name}: cumulative repeat transactions over weeks 1-78 (the paper's tracking plot, not a goal) "
            f"{self.tracking_predicted:,.0f} vs actual {self.tracking_actual:,.0f} "
            f"({self.tracking_predicted / self.tracking_actual - 1:+.1%})",
        ]


def evaluate(
    s: Split, predicted: NDArray[np.float64], p_none: NDArray[np.float64], params: dict[str, float]
) -> Figures:
    """Figures of predictions (expected holdout purchases, P(no holdout purchase)) against the holdout."""
    naive = np.where(s.T > 0, s.x / np.maximum(s.T, 1e-9), 0.0) * s.horizon
    none = s.holdout == 0
    p = bgnbd.BgNbdParams.from_dict(params)
    return Figures(
        predicted_total=float(predicted.sum()),
        actual_total=float(s.holdout.sum()),
        total_error=float(predicted.sum() / s.holdout.sum() - 1),
        mae=float(np.mean(np.abs(predicted - s.holdout))),
        naive_mae=float(np.mean(np.abs(naive - s.holdout))),
        auc_no_purchase=auc(p_none, none),
        auc_expected=auc(-predicted, none),
        rfm_auc_no_purchase=auc(-rfm_score(s), none),
        params=params,
        tracking_predicted=float(bgnbd.expected_purchases_new(p, s.T + s.horizon).sum()),
        tracking_actual=float(s.x.sum() + s.holdout.sum()),
    )


def evaluate_bgnbd(s: Split) -> Figures:
    """Fit cxhub's BG/NBD on the calibration and score the holdout."""
    params, _ = bgnbd.fit(s.x, s.t_x, s.T)
    predicted = bgnbd.expected_purchases(params, s.horizon, s.x, s.t_x, s.T)
    p_none = bgnbd.probability_no_purchase(params, s.horizon, s.x, s.t_x, s.T)
    return evaluate(s, predicted, p_none, params.as_dict())


def load_cdnow(path: str) -> list[tuple[str, int, float]]:
    """CDNOW_master.txt(.gz): ``customer yyyymmdd cds dollars`` -> (customer, day from 1997-01-01, dollars)."""
    import datetime as dt
    import gzip

    start = dt.date(1997, 1, 1)
    out = []
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) != 4 or not parts[1].isdigit():
                continue
            d = parts[1]
            day = (dt.date(int(d[:4]), int(d[4:6]), int(d[6:])) - start).days
            out.append((parts[0], day, float(parts[3])))
    return out


#: CDNOW (day 0 = 1997-01-01, a Wednesday): weeks 1-39 calibrate, days 0-272 (1997-01-01 .. 1997-09-30,
#: the published calibration end), weeks 40-78 are the holdout, days 273-545 (.. 1998-06-30): 273 days
CDNOW_CALIBRATION_END = 273
CDNOW_HOLDOUT_END = 546


def planted_effect(n: int, now: datetime, seed: int = 11) -> tuple[list[dict[str, Any]], set[str]]:
    """The synthetic data set (docs/customers.md, "How the planted effect is generated"): ``n``
    customers buy at a steady rate (a purchase every 10-40 days, from 300 days back); a random
    quarter of them get a complaint 40-100 days back whose case breaches its SLA (never
    acknowledged), and from then on 80% of those stop buying; the others keep buying as before,
    except 10% who lapse at a random time with nothing said."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    at_risk: set[str] = set()
    for c in range(n):
        member = f"P{c}"
        gap = rng.uniform(10, 40)
        breach = rng.random() < 0.25
        stop_at = None
        complaint_day = rng.uniform(40, 100)
        if breach:
            at_risk.add(member)
            records.append(
                {
                    "id": f"rv{c}",
                    "kind": "review",
                    "at": (now - timedelta(days=complaint_day)).isoformat(),
                    "member": member,
                    "store": "S001",
                    "rating": "1",
                    "text": "牛奶过期了，太差了",
                    "topics": ["商品质量"],
                }
            )
            if rng.random() < 0.8:
                stop_at = complaint_day
        elif rng.random() < 0.1:
            stop_at = rng.uniform(30, 200)
        day = 300 - rng.uniform(0, gap)
        k = 0
        while day > 1:
            if stop_at is None or day > stop_at:
                records.append(
                    {
                        "id": f"p{c}-{k}",
                        "kind": "transaction",
                        "at": (now - timedelta(days=day)).isoformat(),
                        "member": member,
                        "store": "S001",
                        "total": "60.00",
                    }
                )
            k += 1
            day -= rng.expovariate(1 / gap)
    return records, at_risk
