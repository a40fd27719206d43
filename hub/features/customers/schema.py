"""Tables of the customers feature (migration ``0015_customers``): the latest score of each customer,
the fitted purchase models, and the actions taken on scores.

``customer_scores`` and ``customer_actions`` are keyed by customer: when two customers merge, the
absorbed one's rows are re-keyed (actions) or dropped (its score is recomputed at the next scoring).
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, String, Table

from hub.store.schema import BigId, KeyString, UTCDateTime, metadata

#: one row per customer: the history's summary, the model's view of it, the risk and why
customer_scores = Table(
    "customer_scores",
    metadata,
    Column("customer_id", KeyString(36), primary_key=True),
    Column("scored_at", UTCDateTime(), nullable=False),
    Column("model_id", BigId),
    Column("store", String(128)),  # the store they visit most (ties: the latest)
    Column("purchases", Integer, nullable=False),  # purchase days
    Column("first_purchase_at", UTCDateTime()),
    Column("last_purchase_at", UTCDateTime()),
    Column("x", Integer, nullable=False),  # repeat purchase days
    Column("t_x", Float, nullable=False),  # days from the first purchase to the last
    Column("t_obs", Float, nullable=False),  # days from the first purchase to the scoring
    Column("spend", Float, nullable=False),  # net of refunds, within customers.value_window
    Column("refunds", Integer, nullable=False),
    Column("p_alive", Float),
    Column("expected", Float),  # purchases expected within customers.horizon
    Column("value_at_risk", Float, nullable=False),
    Column("risk", Float, nullable=False),
    Column("previous_risk", Float),
    Column("insufficient", Boolean, nullable=False),
    Column("reasons", JSON, nullable=False),  # [{"signal", "text", "weight"}], strongest first
    Column("signals", JSON, nullable=False),
    Index("ix_customer_scores_store_risk", "store", "risk"),
)

#: every fitted purchase model (the newest is used)
customer_models = Table(
    "customer_models",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("fitted_at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("customers", Integer, nullable=False),
    Column("log_likelihood", Float),
    Column("detail", JSON, nullable=False),
)

#: what the action rules did: one row per (rule, customer, cooldown period), keyed for idempotency
customer_actions = Table(
    "customer_actions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("rule", String(64), nullable=False),
    Column("customer_id", KeyString(36), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("action", String(32), nullable=False),  # win_back_case / survey
    Column("decision", String(32), nullable=False),  # opened / joined / scheduled / deferred / suppressed / skipped
    Column("reason", String(255)),
    Column("ref", String(64)),  # the case id or the invitation id
    Column("risk", Float, nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_customer_actions_customer", "customer_id", "at"),
)
