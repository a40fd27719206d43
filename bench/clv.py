"""The customers feature's goals, measured: the purchase model on CDNOW, the planted effect, and
scoring at scale on PostgreSQL.

1. **CDNOW** (tests/data/cdnow, 23,570 customers, 1997-01..1998-06): calibrate on weeks 1-39,
   predict weeks 40-78; the total of repeat transactions against the actual, per-customer MAE
   against the naive baseline (the calibration rate carried forward), AUC of "no purchase in the
   holdout" against the RFM-score baseline. The same figures for lifetimes (the reference
   library), in the same run, when ``--lifetimes-python`` names a Python that has it (a venv of
   its own: it pins old pandas and is not a dependency of cxhub).
2. **Planted effect**: synthetic customers where those with breached cases churn more
   (:func:`hub.features.customers.evaluation.planted_effect`), through the real ingest and
   scoring on SQLite; the AUC of the risk score for the planted at-risk customers.
3. **Scale**: ``--customers`` customers with ``--transactions`` transactions on average, generated
   with ``generate_series`` in a dedicated PostgreSQL database (``cxhub_bench_clv``), scored by
   the real job; wall time and peak RSS of this process (PostgreSQL's own memory is its own).

    .venv/bin/python bench/clv.py --lifetimes-python /tmp/lifetimes-venv/bin/python
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hub.features.customers import evaluation as ev  # noqa: E402

CDNOW = ROOT / "tests" / "data" / "cdnow" / "CDNOW_master.txt.gz"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "cxhub_bench_clv"

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


def cdnow(lifetimes_python: str | None) -> None:
    purchases = ev.load_cdnow(str(CDNOW))
    s = ev.split(purchases, ev.CDNOW_CALIBRATION_END, ev.CDNOW_HOLDOUT_END)
    print(
        f"CDNOW: {len(s.x):,} customers, {int(s.x.sum()):,} repeat purchase days in weeks 1-39 "
        f"(T {s.T.min():.0f}-{s.T.max():.0f} days, to 1997-09-30), "
        f"{int(s.holdout.sum()):,} repeat purchase days in weeks 40-78 ({s.horizon:.0f} days, to 1998-06-30)"
    )
    t0 = time.perf_counter()
    ours = ev.evaluate_bgnbd(s)
    took = time.perf_counter() - t0
    p = ours.params
    print(
        f"cxhub BG/NBD: r={p['r']:.4f} alpha={p['alpha']:.3f} a={p['a']:.4f} b={p['b']:.4f}, fit and predict {took:.2f}s"
    )
    for line in ours.lines("cxhub"):
        print("  " + line)
    if not lifetimes_python:
        print("lifetimes: not measured (give --lifetimes-python)")
        return
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
    hardie_sample(lifetimes_python)


def hardie_sample(lifetimes_python: str) -> None:
    """The paper's own data: the 1/10 sample (2,357 customers) and Fader & Hardie's published
    calibration summary (weeks), both shipped in lifetimes' datasets. cxhub's split of the sample's
    event log against the published summary, the fit against the paper's estimates (r 0.243,
    alpha 4.414, a 0.793, b 2.426), and the holdout total on the paper's own data."""
    import csv
    import datetime as dt

    from hub.features.customers import bgnbd

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
    weeks = s.T / 7, s.t_x / 7
    params, _ = bgnbd.fit(s.x, weeks[1], weeks[0])
    predicted = bgnbd.expected_purchases(params, s.horizon / 7, s.x, weeks[1], weeks[0]).sum()
    tracking = bgnbd.expected_purchases_new(params, weeks[0] + s.horizon / 7).sum()
    actual = s.holdout.sum()
    print(
        f"Fader & Hardie's 1/10 sample: {len(s.x):,} customers, cxhub's split equals the published calibration "
        f"summary (x, t_x, T in weeks) for {same:,} of {len(published):,}; weekly fit r={params.r:.3f} "
        f"alpha={params.alpha:.3f} a={params.a:.3f} b={params.b:.3f} (paper: 0.243, 4.414, 0.793, 2.426)"
    )
    print(
        f"  holdout weeks 40-78: predicted {predicted:,.0f} vs actual {actual:,.0f} ({predicted / actual - 1:+.1%}); "
        f"cumulative weeks 1-78 {tracking:,.0f} vs {s.x.sum() + actual:,.0f} ({tracking / (s.x.sum() + actual) - 1:+.1%})"
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
    ap.add_argument("--lifetimes-python", help="a Python with lifetimes installed (the reference library)")
    ap.add_argument("--planted", type=int, default=2000, help="synthetic customers of the planted effect")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--transactions", type=int, default=20, help="per customer, on average")
    ap.add_argument("--regenerate", action="store_true", help="generate the scale data again")
    args = ap.parse_args()
    parts = args.only or ["cdnow", "planted", "scale"]
    if "cdnow" in parts:
        cdnow(args.lifetimes_python)
    if "planted" in parts:
        planted(args.planted)
    if "scale" in parts:
        scale(args.customers, args.transactions, args.regenerate)


if __name__ == "__main__":
    main()
