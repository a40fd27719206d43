"""Helpers for the feedback tests: a config with a small org, events, a case service on a real store."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from hub.features.feedback.cases import CaseService
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.detection import Detector
from hub.features.feedback.links import LinkSigner
from hub.features.feedback.sentiment import LexiconSentiment
from hub.ingest import IngestContext
from hub.model import Customer, EventKind, Feedback, Order, OrderItem, Org, TouchpointEvent
from hub.sdk.testing import FakeClock
from hub.store import Store

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


RUNTIME_CONFIG = """
secret_key: test-secret-key
store: {{url: "sqlite:///{db}"}}
server: {{public_url: "http://127.0.0.1:{port}"}}
sources:
  reviews:
    connector: jsonl
    mapping: generic_review
    options: {{path: "{feed}", id_path: review_id}}
destinations:
  dt_s001:
    connector: dingtalk_robot
    options: {{access_token: tok-s001, secret: SEC-s001, base_url: "{robot}"}}
  dt_district:
    connector: dingtalk_robot
    options: {{access_token: tok-district, secret: SEC-district, base_url: "{robot}"}}
feedback:
  sentiment: {{engine: snownlp}}
  sweep_every: {sweep}
  sla:
    high: {{ack: {ack}, resolve: 1h, warn_before: 0, escalate_every: {ack}}}
  remind_every: 1h
  contacts:
    s001: {{name: 徐汇店群, kind: group, endpoints: [{{destination: dt_s001}}]}}
    li: {{name: 李经理, endpoints: [{{destination: dt_district}}]}}
  org:
    districts: {{sh: {{name: 上海片区, contacts: [li]}}}}
    stores: {{S001: {{name: 徐汇店, parent: sh, contacts: [s001]}}}}
"""


def write_runtime_config(
    tmp: Any,
    *,
    robot: str,
    port: int = 8080,
    ack: str = "10m",
    sweep: str = "15s",
    db: str = "cxhub.db",
    http_feed: str | None = None,
) -> Any:
    """A cxhub.yaml in ``tmp``: a review feed (a jsonl drop, or the ``http_feed`` connector reading
    ``http_feed``), two DingTalk robots, a store and its district."""
    feed = tmp / "reviews.jsonl"
    feed.touch()
    path = tmp / "cxhub.yaml"
    text = RUNTIME_CONFIG.format(db=tmp / db, port=port, feed=feed, robot=robot, ack=ack, sweep=sweep)
    if http_feed:
        text = text.replace(
            f'connector: jsonl\n    mapping: generic_review\n    options: {{path: "{feed}", id_path: review_id}}',
            "connector: http_feed\n    mapping: generic_review\n"
            f'    options: {{base_url: "{http_feed}", path: /reviews, records: data, id: review_id, '
            "pagination: {type: none}, retries: 1}",
        )
        assert "http_feed" in text
    path.write_text(text, encoding="utf-8")
    return path


class FakeReviewFeed:
    """A review platform's feed API on 127.0.0.1: ``GET /reviews`` -> ``{"data": [...]}``."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.records: list[dict[str, Any]] = []
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                import json

                body = json.dumps({"data": feed.records}, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def review_record(
    n: int, *, rating: int = 1, text: str = "牛奶是坏的，店员态度很差", member: str = "M001"
) -> dict[str, Any]:
    """A review as the generic_review feed delivers it."""
    return {
        "review_id": f"rv-{n}",
        "created_at": "2026-11-22T10:00:00+08:00",
        "platform": "meituan",
        "store_code": "S001",
        "store_name": "徐汇店",
        "order_id": f"O-{n}",
        "rating": rating,
        "content": text,
        "member_no": member,
    }
