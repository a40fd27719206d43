"""Two customers merge: the absorbed customer's cases follow the survivor (the older one), each
with a ``customer_merged`` audit entry; SQLite and the real PostgreSQL."""

from __future__ import annotations

from kit.cases import make_service
from sqlalchemy import select

from hub.features.feedback import feature
from hub.features.feedback.schema import case_events, cases
from hub.ingest import Ingestor
from hub.mapping import load_mapping_text
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import customers

REVIEWS = load_mapping_text(
    """\
name: reviews
kind: review
fields:
  occurred_at: {path: at, type: datetime}
  org.store: store
  feedback.rating: {path: rating, type: decimal}
  feedback.text: text
  customer.identities: {member_id: member, phone: mobile}
""",
    "reviews.yaml",
)


def review(ext: str, clock: FakeClock, rating: int, text: str, **ids: str) -> RawRecord:
    return RawRecord(
        "reviews", ext, {"at": clock().isoformat(), "store": "S001", "rating": rating, "text": text, **ids}, clock()
    )


def test_cases_follow_the_survivor(store: Store, clock: FakeClock) -> None:
    service = make_service(store, clock)
    ing = Ingestor(store, b"test-secret-key", hooks=[service], clock=clock)
    ing.identity.merges = [feature.on_merge]
    ing.ingest("reviews", REVIEWS, [review("r1", clock, 5, "很好", member="M1")])  # the older customer
    clock.advance(minutes=10)
    ing.ingest("reviews", REVIEWS, [review("r2", clock, 1, "牛奶是坏的，太差了", mobile="13800000002")])
    with store.connect() as conn:
        [(case_id, younger)] = conn.execute(select(cases.c.id, cases.c.customer_id)).all()
        [older] = conn.execute(select(customers.c.id).where(customers.c.id != younger)).scalars().all()
    clock.advance(minutes=10)
    ing.ingest("reviews", REVIEWS, [review("r3", clock, 5, "不错", member="M1", mobile="13800000002")])
    with store.connect() as conn:
        assert conn.execute(select(cases.c.customer_id)).scalars().all() == [older]
        q = select(case_events.c.action, case_events.c.detail).where(case_events.c.case_id == case_id)
        merged = [dict(d) for a, d in conn.execute(q) if a == "customer_merged"]
    assert merged == [{"from": younger, "to": older}]
