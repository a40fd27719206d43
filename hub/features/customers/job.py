"""The scoring job: fit the purchase model on a sample of customers, then score every customer in
batches and act on the scores (``cxhub run``'s leader runs it every ``customers.score_every``;
``cxhub customers score`` runs it by hand).

1. **Fit.** The purchase summaries of a sample of customers (those whose id falls in a leading
   slice of the id space, about ``fit_sample`` of them: ids are random, so the slice is a random
   sample) are read in SQL; BG/NBD is fitted on their ``(x, t_x, T)``.
2. **Score.** The summaries of all customers are streamed in customer order with what they said and
   lived (:mod:`hub.features.customers.facts`); each batch is scored, upserted into
   ``customer_scores`` (the previous risk kept beside the new one) and handed to the action rules,
   in one transaction per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select

from hub.features.customers.config import CustomersConfig
from hub.features.customers.facts import FactReader
from hub.features.customers.schema import customer_models, customer_scores
from hub.features.customers.scoring import ChurnScorer, CustomerFacts, RiskScore
from hub.sdk.connector import Clock, utcnow
from hub.store import Store
from hub.store.schema import customers

if TYPE_CHECKING:
    from hub.features.customers import bgnbd

log = logging.getLogger("cxhub.customers")

DAY = 86400.0


@dataclass
class ScoringReport:
    """What one scoring run did."""

    customers: int = 0
    insufficient: int = 0
    at_risk: int = 0
    unattributed: int = 0
    model: dict[str, Any] | None = None
    model_error: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    fit_seconds: float = 0.0
    seconds: float = 0.0


class Scoring:
    """Fits the purchase model and scores customers; see the module docstring."""

    def __init__(
        self,
        cfg: CustomersConfig,
        store: Store,
        scorer: ChurnScorer,
        *,
        timezone: str = "Asia/Shanghai",
        clock: Clock = utcnow,
        actions: Any = None,
        has_cases: bool = False,
    ):
        self.cfg = cfg
        self.store = store
        self.scorer = scorer
        self.timezone = timezone
        self.clock = clock
        self.actions = actions
        self.has_cases = has_cases

    def _reader(self, conn: Connection, voice: Connection, cases: Connection | None, now: datetime) -> FactReader:
        return FactReader(
            conn,
            voice,
            cases,
            now=now,
            timezone=self.timezone,
            value_window=self.cfg.value_window,
            signal_window=self.cfg.signal_window,
            batch=self.cfg.batch_size,
        )

    # ------------------------------------------------------------ fit

    def fit(self, conn: Connection, now: datetime) -> tuple[bgnbd.BgNbdParams, int, float]:
        """Fit BG/NBD on a sample of customers' summaries (raises :class:`bgnbd.FitError`)."""
        import numpy as np

        from hub.features.customers import bgnbd

        total = int(conn.execute(select(func.count()).select_from(customers)).scalar() or 0)
        share = 1.0 if total <= self.cfg.fit_sample else self.cfg.fit_sample / total
        hi = "" if share >= 1.0 else f"{max(int(share * 16**4), 1):04x}"
        reader = self._reader(conn, conn, None, now)
        xs: list[int] = []
        txs: list[float] = []
        Ts: list[float] = []
        for row in reader.summaries(hi=hi):
            f = reader.history(row)
            if f.purchases >= 1:
                xs.append(f.x)
                txs.append(f.t_x)
                Ts.append(f.t_obs)
        params, ll = bgnbd.fit(np.array(xs), np.array(txs), np.array(Ts), penalizer=0.001 if len(xs) < 2000 else 0.0)
        return params, len(xs), ll

    # ------------------------------------------------------------ score

    def model_quantities(self, params: bgnbd.BgNbdParams | None, batch: Sequence[CustomerFacts]) -> None:
        """Fill p_alive, expected and p_silent of the customers who bought at least once."""
        import numpy as np

        from hub.features.customers import bgnbd

        horizon = self.cfg.horizon / DAY
        if params is None:
            return
        idx = [i for i, f in enumerate(batch) if f.purchases >= 1]
        if idx:
            x = np.array([batch[i].x for i in idx], dtype=np.float64)
            tx = np.array([batch[i].t_x for i in idx], dtype=np.float64)
            T = np.array([batch[i].t_obs for i in idx], dtype=np.float64)
            alive = bgnbd.probability_alive(params, x, tx, T)
            expected = bgnbd.expected_purchases(params, horizon, x, tx, T)
            silent = bgnbd.probability_no_purchase(params, horizon, x, tx, T)
            for k, i in enumerate(idx):
                batch[i].p_alive = float(alive[k])
                batch[i].expected = float(expected[k])
                batch[i].p_silent = float(silent[k])
        prior = bgnbd.probability_no_purchase_new(params, horizon)
        for f in batch:
            if f.purchases == 0:
                f.p_silent = prior

    def rows(
        self, batch: Sequence[CustomerFacts], scores: Sequence[RiskScore], now: datetime, model_id: int | None
    ) -> list[dict[str, Any]]:
        share = self.cfg.horizon / self.cfg.value_window
        out = []
        for f, s in zip(batch, scores, strict=True):
            out.append(
                {
                    "customer_id": f.customer_id,
                    "scored_at": now,
                    "model_id": model_id,
                    "store": f.store,
                    "purchases": f.purchases,
                    "first_purchase_at": f.first_purchase_at,
                    "last_purchase_at": f.last_purchase_at,
                    "x": f.x,
                    "t_x": f.t_x,
                    "t_obs": f.t_obs,
                    "spend": round(f.spend, 2),
                    "refunds": f.refunds,
                    "p_alive": f.p_alive,
                    "expected": f.expected,
                    "value_at_risk": round(max(f.spend, 0.0) * share * s.risk, 2),
                    "risk": round(s.risk, 4),
                    "insufficient": s.insufficient,
                    "reasons": [r.as_dict() for r in s.reasons],
                    "signals": {
                        "breached_cases": f.breached_cases,
                        "open_cases": f.open_cases,
                        "recovered_cases": f.recovered_cases,
                        "detractors": f.detractors,
                        "negative_texts": f.negative_texts,
                        "topics": f.topics,
                        "bad_amounts": f.bad_amounts,
                        "last_negative_at": f.last_negative_at.isoformat() if f.last_negative_at else None,
                    },
                }
            )
        return out

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]]) -> dict[str, float]:
        """Write the batch's scores; returns the risks they replace."""
        ids = [r["customer_id"] for r in rows]
        previous = {
            cid: float(risk)
            for cid, risk in conn.execute(
                select(customer_scores.c.customer_id, customer_scores.c.risk).where(
                    customer_scores.c.customer_id.in_(ids)
                )
            )
        }
        for r in rows:
            r["previous_risk"] = previous.get(r["customer_id"])
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        stmt = dialect_insert(customer_scores)
        cols = [c.name for c in customer_scores.c if c.name != "customer_id"]
        stmt = stmt.on_conflict_do_update(
            index_elements=["customer_id"], set_={c: getattr(stmt.excluded, c) for c in cols}
        )
        conn.execute(stmt, rows)
        return previous

    def run(self, *, now: datetime | None = None) -> ScoringReport:
        """One scoring run: fit, then score everyone in batches and act."""
        # numpy and scipy load here, in the job, not when a command installs the feature
        from hub.features.customers import bgnbd

        started = time.perf_counter()
        now = now or self.clock()
        report = ScoringReport()
        params: bgnbd.BgNbdParams | None = None
        model_id: int | None = None
        with self.store.connect() as conn:
            try:
                params, n, ll = self.fit(conn, now)
            except bgnbd.FitError as exc:
                report.model_error = str(exc)
                log.warning("customer scoring: no purchase model (%s); scores say 'insufficient history'", exc)
            conn.rollback()
        report.fit_seconds = time.perf_counter() - started
        if params is not None:
            report.model = {**params.as_dict(), "customers": n, "log_likelihood": ll}
            with self.store.begin() as conn:
                model_id = int(
                    conn.execute(
                        insert(customer_models).returning(customer_models.c.id),
                        {
                            "fitted_at": now,
                            "kind": "bgnbd",
                            "params": params.as_dict(),
                            "customers": n,
                            "log_likelihood": ll,
                            "detail": {"unit": "day", "horizon_days": self.cfg.horizon / DAY},
                        },
                    ).scalar_one()
                )
        for batch in self._batches(now, report):
            self.model_quantities(params, batch)
            scores = self.scorer.score(batch, horizon_days=self.cfg.horizon / DAY)
            rows = self.rows(batch, scores, now, model_id)
            with self.store.begin() as conn:
                previous = self._upsert(conn, rows)
                if self.actions is not None:
                    for decision in self.actions.apply(conn, batch, rows, previous, now):
                        report.actions[decision] = report.actions.get(decision, 0) + 1
            report.customers += len(rows)
            report.insufficient += sum(1 for s in scores if s.insufficient)
            report.at_risk += sum(1 for s in scores if s.risk >= self.cfg.at_risk)
        report.seconds = time.perf_counter() - started
        log.info(
            "customer scoring: %d customers (%d insufficient history, %d at risk) in %.1fs",
            report.customers,
            report.insufficient,
            report.at_risk,
            report.seconds,
        )
        return report

    def _batches(self, now: datetime, report: ScoringReport) -> Iterator[list[CustomerFacts]]:
        """The facts in batches. PostgreSQL: three streaming cursors on their own connections, while
        each batch is written on a fourth. SQLite (the embedded store, one writer at a time, and
        every connection opens a write transaction): read everything on one connection first."""
        if self.store.is_sqlite:
            with self.store.connect() as conn:
                reader = self._reader(conn, conn, conn if self.has_cases else None, now)
                report.unattributed = reader.count_unattributed()
                batches = list(reader.batches())
                conn.rollback()
            yield from batches
            return
        with self.store.connect() as read, self.store.connect() as voice, self.store.connect() as cases:
            reader = self._reader(read, voice, cases if self.has_cases else None, now)
            report.unattributed = reader.count_unattributed()
            yield from reader.batches()
