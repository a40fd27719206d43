"""Personal data of the customers feature: retention and forgetting (see :meth:`hub.feature.Feature.purge`).

A customer's score (their purchase history's summary and risk) and the actions taken on it are
about one person: deleted when they are forgotten. Actions older than ``privacy.retention.touchpoints``
are deleted (the history they were decided on is gone); the fitted purchase models are aggregates
and stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, select

from hub.feature import Retention
from hub.features.customers.schema import customer_actions, customer_scores


def purge(conn: Connection, now: datetime, retention: Retention) -> dict[str, int]:
    """One batch of actions older than the touchpoints' retention, deleted."""
    cutoff = retention.cutoff("touchpoints")
    if cutoff is None:
        return {}
    a = customer_actions.c
    old = list(conn.execute(select(a.id).where(a.at < cutoff).limit(retention.batch)).scalars())
    if not old:
        return {}
    return {
        "touchpoints.customer_actions.deleted": conn.execute(delete(customer_actions).where(a.id.in_(old))).rowcount
    }


def forget(conn: Connection, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """The customers' scores and actions deleted."""
    ids = list(customer_ids)
    scores = conn.execute(delete(customer_scores).where(customer_scores.c.customer_id.in_(ids))).rowcount
    actions = conn.execute(delete(customer_actions).where(customer_actions.c.customer_id.in_(ids))).rowcount
    return {"customer_scores.deleted": scores, "customer_actions.deleted": actions}
