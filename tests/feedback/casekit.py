"""Helpers for the feedback tests: a config with a small org, events, a case service on a real store."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from hub.feedback.cases import CaseService
from hub.feedback.config import FeedbackConfig
from hub.feedback.detection import Detector
from hub.feedback.links import LinkSigner
from hub.feedback.sentiment import LexiconSentiment
from hub.ingest import IngestContext
from hub.model import Customer, EventKind, Feedback, Order, OrderItem, Org, TouchpointEvent
from hub.store import Store
from hub.testing import FakeClock

SECRET = b"test-secret-key"

CONFIG: dict[str, Any] = {
    "sentiment": {"engine": "lexicon"},
    "sla": {
        "high": {"ack": "10m", "resolve": "24h", "warn_before": "2m", "escalate_every": "10m"},
        "medium": {"ack": "30m", "resolve": "48h"},
        "low": {"ack": "4h", "resolve": "72h"},
    },
    "remind_every": "10m",
    "max_reminders": 3,
    "contacts": {
        "s001_group": {"name": "徐汇店群", "kind": "group", "endpoints": [{"destination": "dt_s001"}]},
        "s002_group": {"name": "静安店群", "kind": "group", "endpoints": [{"destination": "dt_s002"}]},
        "zhang": {"name": "张店长", "endpoints": [{"destination": "dt_work", "to": ["zhang01"]}]},
        "li": {"name": "李经理", "endpoints": [{"destination": "dt_work", "to": ["li01"]}]},
        "east": {"name": "华东大区", "endpoints": [{"destination": "feishu_east", "to": ["ou_east"]}]},
        "hq_cx": {"name": "总部客服", "endpoints": [{"destination": "wecom_hq"}]},
        "quality": {"name": "食安组", "endpoints": [{"destination": "wecom_hq", "mention": ["13800000000"]}]},
        "night": {"name": "夜班", "endpoints": [{"destination": "dt_work", "to": ["night01"]}]},
    },
    "rosters": {
        "s001_duty": {
            "shifts": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00", "contacts": ["zhang"]},
                {"from": "20:00", "to": "08:00", "contacts": ["night"]},
            ],
        }
    },
    "org": {
        "hq": {"name": "总部", "contacts": ["hq_cx"]},
        "regions": {"east": {"name": "华东大区", "contacts": ["east"]}},
        "districts": {"sh": {"name": "上海片区", "parent": "east", "contacts": ["li"]}},
        "stores": {
            "S001": {"name": "徐汇店", "parent": "sh", "contacts": ["s001_group", "s001_duty"]},
            "S002": {"name": "静安店", "parent": "sh", "contacts": ["s002_group"]},
        },
    },
    "routing": [
        {
            "name": "food-safety",
            "when": {"severity": "high", "category": ["生鲜", "乳品"]},
            "notify": ["quality", "@store"],
            "continue": True,
        },
        {"name": "default", "when": {}, "notify": ["@store"]},
    ],
    "fallback": ["hq_cx"],
}

DESTINATIONS = ["dt_s001", "dt_s002", "dt_work", "feishu_east", "wecom_hq"]


def make_config(**overrides: Any) -> FeedbackConfig:
    data = {**CONFIG, **overrides}
    return FeedbackConfig.model_validate(data)


def make_service(store: Store, clock: FakeClock, cfg: FeedbackConfig | None = None) -> CaseService:
    cfg = cfg or make_config()
    return CaseService(
        cfg,
        store,
        Detector(cfg, LexiconSentiment()),
        LinkSigner(SECRET, "https://cx.example.com"),
        clock=clock,
        destinations=DESTINATIONS,
    )


_n = 0


def review(
    *,
    rating: int | None = 1,
    text: str | None = "太差了",
    store: str | None = "S001",
    customer: str | None = "cust-1",
    at: datetime | None = None,
    category: str | None = None,
    nps: int | None = None,
    kind: EventKind = EventKind.review,
    ext: str | None = None,
) -> TouchpointEvent:
    global _n
    _n += 1
    items = [OrderItem(name="鲜牛奶", category=category, price=Decimal("12.50"))] if category else []
    return TouchpointEvent(
        source="reviews",
        external_id=ext or f"r{_n}",
        kind=kind,
        channel="meituan",
        occurred_at=at or datetime(2026, 11, 2, 1, 59, tzinfo=FakeClock().now.tzinfo),
        customer=Customer(customer_id=customer, name="张三丰", member_level="金卡"),
        org=Org(brand="鲜丰", store=store),
        order=Order(id="O-1001", amount=Decimal("58.00"), items=items),
        feedback=Feedback(rating=None if rating is None else Decimal(rating), nps=nps, text=text),
    )


def ingest(service: CaseService, store: Store, clock: FakeClock, *events: TouchpointEvent) -> None:
    """Run the hook like the ingestor does: inside one transaction."""
    with store.begin() as conn:
        service(IngestContext(conn=conn, now=clock(), store=store), list(events))
