"""Wiring of the customers feature into a :class:`~hub.runtime.Runtime`, and its public interface."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete

from hub.features.customers import access
from hub.features.customers.actions import ActionRules
from hub.features.customers.config import CustomersConfig
from hub.features.customers.job import Scoring, ScoringReport
from hub.features.customers.schema import customer_scores
from hub.features.customers.scoring import load_scorer
from hub.privacy import Vault
from hub.sdk.connector import Clock, utcnow
from hub.store import Store

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("cxhub.customers")


def forget_scores(conn: Connection, absorbed: Sequence[str], survivor: str, now: datetime) -> None:
    """Merge hook: the absorbed customers' scores go (the survivor's is recomputed at the next run)."""
    conn.execute(delete(customer_scores).where(customer_scores.c.customer_id.in_(list(absorbed))))


class CustomerService:
    """``runtime.features["customers"]``: scoring runs and the scoped reads of the customer view."""

    def __init__(
        self,
        cfg: CustomersConfig,
        store: Store,
        scoring: Scoring,
        org: access.OrgTree,
        *,
        vault: Vault | None = None,
        clock: Clock = utcnow,
    ):
        self.cfg = cfg
        self.store = store
        self.scoring = scoring
        self.org = org
        self.vault = vault
        self.clock = clock

    def score(self) -> ScoringReport:
        """Fit the purchase model and score every customer now."""
        return self.scoring.run(now=self.clock())

    def find(self, *, customer_id: str | None = None, phone: str | None = None, openid: str | None = None) -> str:
        with self.store.connect() as conn:
            return access.find_customer(conn, customer_id=customer_id, phone=phone, openid=openid, vault=self.vault)

    def profile(self, customer_id: str, scope: access.Scope = access.HQ, *, reveal: bool = False) -> dict[str, Any]:
        with self.store.connect() as conn:
            return access.profile(conn, customer_id, scope, self.org, now=self.clock(), reveal=reveal)

    def at_risk(
        self, scope: access.Scope = access.HQ, *, min_risk: float | None = None, limit: int = 100
    ) -> dict[str, Any]:
        with self.store.connect() as conn:
            return access.at_risk(
                conn, scope, self.org, min_risk=self.cfg.at_risk if min_risk is None else min_risk, limit=limit
            )

    def scope_of_token(self, token: str) -> access.Scope | None:
        """The scope of a JSON API bearer token (compared in constant time), or None."""
        for key in self.cfg.api_keys.values():
            if hmac.compare_digest(key.token.get_secret_value().encode(), token.encode()):
                return access.Scope.parse(key.scope)
        return None


def install(rt: Runtime) -> CustomerService:
    from hub.runtime import PeriodicJob

    cfg = rt.config.section("customers")
    cfg = cfg if isinstance(cfg, CustomersConfig) else CustomersConfig()
    feedback_cfg = rt.config.section("feedback")
    timezone = getattr(feedback_cfg, "timezone", None) or "Asia/Shanghai"
    scorer = load_scorer(cfg.scorer, cfg.weights, min_purchases=cfg.min_purchases, file=rt.config.file)
    actions = ActionRules(
        cfg, cases=rt.features.get("feedback"), surveys=rt.features.get("surveys"), file=rt.config.file
    )
    scoring = Scoring(
        cfg,
        rt.store,
        scorer,
        timezone=timezone,
        clock=rt.clock,
        actions=actions if actions else None,
        has_cases="feedback" in rt.features,
    )
    service = CustomerService(
        cfg, rt.store, scoring, access.OrgTree.from_config(rt.config), vault=Vault(rt.config.secret_key), clock=rt.clock
    )

    def job() -> None:
        try:
            service.score()
        except Exception:
            log.exception("customer scoring failed; it runs again in %ss", cfg.score_every)

    if cfg.enabled:
        rt.jobs.append(PeriodicJob("customer-scoring", cfg.score_every, job, leader_only=True))

    def router() -> Any:
        from hub.features.customers.web import build_router

        return build_router(service, rt.config.raw)

    rt.routers.append(router)
    return service
