"""Ingest on SQLite and the real PostgreSQL: dedup, quarantine, replay, identity, one transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.ingest import IngestContext, Ingestor
from hub.mapping import load_mapping_text
from hub.replay import replay_quarantined
from hub.sdk.connector import RawRecord, Rejected
from hub.store import Store
from hub.store.cursors import load_state
from hub.store.schema import customers, identities, inbox, quarantine, source_state, touchpoints

MAPPING = load_mapping_text(
    """\
name: t
kind: transaction
fields:
  occurred_at: {path: at, type: datetime}
  order.amount: {path: total, type: decimal}
  org.store: store
  customer.identities: {member_id: member, phone: mobile, openid: openid}
""",
    "t.yaml",
)
FIXED = load_mapping_text(
    """\
name: t
kind: transaction
fields:
  occurred_at: {path: at, type: datetime}
  order.amount: {path: total, type: decimal, default: 0}
""",
    "t.yaml",
)
SECRET = b"test-secret-key"


def rec(ext: str, **payload: object) -> RawRecord:
    return RawRecord("pos", ext, {"at": "2026-11-01 10:00:00", "total": "1.00", "store": "S1", **payload})


def count(store: Store, table, *where) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_dedup_within_and_across_batches(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    r1 = ing.ingest("pos", MAPPING, [rec("1"), rec("2"), rec("1")], {"cursor": 2})
    assert (r1.stored, r1.duplicates) == (2, 1)
    r2 = ing.ingest("pos", MAPPING, [rec("2"), rec("3")], {"cursor": 3})
    assert (r2.stored, r2.duplicates) == (1, 1)
    assert count(store, touchpoints) == 3
    assert load_state(store, "pos") == {"cursor": 3}


def test_bad_records_are_quarantined_and_the_batch_goes_on(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    r = ing.ingest(
        "pos",
        MAPPING,
        [rec("1"), rec("2", total="abc"), rec("3")],
        rejected=[Rejected("f:9", {"$line": "{"}, "bad JSON")],
    )
    assert (r.stored, r.quarantined) == (2, 2)
    with store.connect() as conn:
        rows = conn.execute(select(quarantine.c.external_id, quarantine.c.reason, quarantine.c.payload)).all()
    reasons = {row[0]: row[1] for row in rows}
    assert "order.amount: 'abc' is not a number" in reasons["2"]
    assert reasons["f:9"] == "bad JSON"
    assert {row[0]: row[2] for row in rows}["2"]["total"] == "abc"  # the raw payload is kept
    # the same bad record arriving again is a duplicate, not a second quarantine row
    assert ing.ingest("pos", MAPPING, [rec("2", total="abc")]).duplicates == 1
    assert count(store, quarantine) == 2


def test_replay_after_mapping_fix(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    ing.ingest("pos", MAPPING, [rec("1", total=None, at="bad")])
    still = replay_quarantined(ing, {"pos": MAPPING})
    assert (still.read, still.stored, still.quarantined) == (1, 0, 1)
    fixed = replay_quarantined(ing, {"pos": FIXED}, source="pos")
    assert fixed.quarantined == 1  # `at` is still bad: reason updated, nothing lost
    with store.begin() as conn:
        conn.execute(quarantine.update().values(payload={"at": "2026-11-01 10:00:00", "total": None}))
    done = replay_quarantined(ing, {"pos": FIXED})
    assert (done.stored, done.quarantined) == (1, 0)
    assert count(store, quarantine, quarantine.c.status == "replayed") == 1
    assert count(store, inbox, inbox.c.status == "stored") == 1


def test_hook_failure_rolls_back_the_whole_batch_and_cursor(store: Store) -> None:
    class Boom:
        name = "boom"

        def __call__(self, ctx: IngestContext, events) -> None:
            raise RuntimeError("rule crashed")

    ing = Ingestor(store, SECRET, hooks=[Boom()], clock=store.clock)
    with pytest.raises(RuntimeError):
        ing.ingest("pos", MAPPING, [rec("1")], {"cursor": 1})
    assert count(store, touchpoints) == 0 and count(store, inbox) == 0 and count(store, source_state) == 0


def test_hooks_see_stored_events_in_the_same_transaction(store: Store) -> None:
    seen = []

    class Spy:
        name = "spy"

        def __call__(self, ctx: IngestContext, events) -> None:
            n = ctx.conn.execute(select(func.count()).select_from(touchpoints)).scalar_one()
            seen.append((len(events), n))

    ing = Ingestor(store, SECRET, hooks=[Spy()], clock=store.clock)
    ing.ingest("pos", MAPPING, [rec("1"), rec("2")])
    ing.ingest("pos", MAPPING, [rec("1")])  # duplicates: hooks not called with nothing
    assert seen == [(2, 2)]


def test_identities_join_and_merge_customers_and_phones_are_never_plain(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    ing.ingest("pos", MAPPING, [rec("1", member="M1"), rec("2", mobile="13812345678")])
    assert count(store, customers, customers.c.merged_into.is_(None)) == 2
    # one event carries both: the two customers merge into one
    r = ing.ingest("pos", MAPPING, [rec("3", member="M1", mobile="+86 138 1234 5678", openid="oX")])
    assert count(store, customers, customers.c.merged_into.is_(None)) == 1
    with store.connect() as conn:
        ids = {row[0] for row in conn.execute(select(touchpoints.c.customer_id))}
        values = [row[0] for row in conn.execute(select(identities.c.value).where(identities.c.namespace == "phone"))]
        docs = " ".join(str(row[0]) for row in conn.execute(select(touchpoints.c.doc)))
    assert ids == {r.events[0].customer.customer_id}
    assert len(values) == 1 and values[0].startswith("h:")
    assert "13812345678" not in docs and "1234 5678" not in docs


def test_identity_merge_inside_one_batch_updates_earlier_events(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    r = ing.ingest(
        "pos",
        MAPPING,
        [
            rec("1", member="A"),
            rec("2", member="B"),
            rec("3", member="A", openid="o1"),
            rec("4", member="B", openid="o1"),
        ],
    )
    assert len({e.customer.customer_id for e in r.events}) == 1
    with store.connect() as conn:
        assert len({row[0] for row in conn.execute(select(touchpoints.c.customer_id))}) == 1


def test_payload_that_cannot_be_json_is_quarantined_not_lost(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    r = ing.ingest("pos", MAPPING, [RawRecord("pos", "x", {"at": object()})])
    assert r.quarantined == 1
    with store.connect() as conn:
        reason, payload = conn.execute(select(quarantine.c.reason, quarantine.c.payload)).one()
    assert "cannot be stored as JSON" in reason and "$repr" in payload


def test_non_utf8_bytes_are_kept_as_base64(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock, keep_raw=True)
    r = ing.ingest("pos", MAPPING, [RawRecord("pos", "x", {"at": "2026-11-01 10:00:00", "blob": b"\xff\xfe"})])
    assert r.stored == 1
    with store.connect() as conn:
        payload = conn.execute(select(inbox.c.payload)).scalar_one()
    assert payload["blob"] == {"$base64": "//4="}


def test_times_round_trip_as_aware_utc(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    ing.ingest("pos", MAPPING, [rec("1")])
    with store.connect() as conn:
        at = conn.execute(select(touchpoints.c.occurred_at)).scalar_one()
    assert at.isoformat() == "2026-11-01T02:00:00+00:00"


def test_no_plain_phone_number_is_stored_for_good_records(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    ing.ingest("pos", MAPPING, [rec("1", member="M1", mobile="13812345678")])
    with store.connect() as conn:
        dumped = ""
        for table in (inbox, touchpoints, identities, customers, source_state):
            dumped += " ".join(str(tuple(r)) for r in conn.execute(select(table)))
    assert "13812345678" not in dumped
    assert "M1" in dumped  # the member id is there: the check reads what was stored


def test_raw_payloads_are_kept_only_when_asked(store: Store) -> None:
    Ingestor(store, SECRET, clock=store.clock).ingest("pos", MAPPING, [rec("1")])
    Ingestor(store, SECRET, clock=store.clock, keep_raw=True).ingest("pos", MAPPING, [rec("2")])
    with store.connect() as conn:
        payloads = dict(conn.execute(select(inbox.c.external_id, inbox.c.payload)).all())
    assert payloads["1"] is None and payloads["2"]["store"] == "S1"
