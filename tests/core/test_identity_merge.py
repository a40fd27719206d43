"""Customers merge (one event carries identities of two): the older customer survives, whatever the
random ids, and every customer-keyed row follows: the core's, and each feature's through its merge
hook (``Feature.customer_columns`` / ``merge`` / ``on_merge``). SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, select, text, update

from hub.feature import Feature
from hub.ingest import Ingestor
from hub.mapping import load_mapping_text
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import customers, identities, touchpoints

MAPPING = load_mapping_text(
    """\
name: t
kind: transaction
fields:
  occurred_at: {path: at, type: datetime}
  customer.identities: {member_id: member, phone: mobile, openid: openid}
""",
    "t.yaml",
)
SECRET = b"test-secret-key"
AT = "2026-11-02T10:00:00+08:00"


def bonus_on_merge(conn: Connection, absorbed: Sequence[str], survivor: str, now: datetime) -> None:
    """A feature's ``merge`` function (by "module:function"): runs after the declared columns moved,
    in the same transaction."""
    conn.execute(text("UPDATE test_points SET points = points + 1 WHERE customer_id = :s"), {"s": survivor})


class Points(Feature):
    """A feature with a customer-keyed table of its own."""

    name = "points_test"
    customer_columns = (("test_points", "customer_id"),)
    merge = f"{__name__}:bonus_on_merge"


def raw(ext: str, **ids: str) -> RawRecord:
    return RawRecord("pos", ext, {"at": AT, **ids}, FakeClock().now)


@pytest.fixture(autouse=True)
def points_table(store: Store) -> None:
    with store.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS test_points (customer_id VARCHAR(36), points INTEGER)"))
        conn.execute(text("DELETE FROM test_points"))


def ingestor(store: Store) -> Ingestor:
    ing = Ingestor(store, SECRET, clock=store.clock)
    ing.identity.merges = [Points().on_merge]
    return ing


def rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(customers)).mappings()}


def cid_of(store: Store, namespace: str, value: str) -> str:
    with store.connect() as conn:
        q = select(identities.c.customer_id).where(identities.c.namespace == namespace, identities.c.value == value)
        return str(conn.execute(q).scalar_one())


def test_the_older_customer_survives_and_everything_follows(store: Store, clock: FakeClock) -> None:
    ing = ingestor(store)
    survived = 0
    runs = 6
    for run in range(runs):
        ing.ingest("pos", MAPPING, [raw(f"a{run}", member=f"M{run}")])
        older = cid_of(store, "member_id", f"M{run}")
        clock.advance(minutes=5)
        ing.ingest("pos", MAPPING, [raw(f"b{run}", openid=f"o{run}")])
        younger = cid_of(store, "openid", f"o{run}")
        with store.begin() as conn:
            conn.execute(text("INSERT INTO test_points VALUES (:c, 10)"), {"c": younger})
            conn.execute(update(customers).where(customers.c.id == younger).values(opted_out=True))
        clock.advance(minutes=5)
        ing.ingest("pos", MAPPING, [raw(f"ab{run}", member=f"M{run}", openid=f"o{run}")])
        got = rows(store)
        if got[younger]["merged_into"] == older and got[older]["merged_into"] is None:
            survived += 1
        assert got[older]["opted_out"] is True  # the younger one's opt-out holds for the survivor
        with store.connect() as conn:
            points = conn.execute(text("SELECT customer_id, points FROM test_points")).all()
            assert [tuple(p) for p in points] == [(older, 11)]  # re-keyed, then the merge function ran
            q = select(touchpoints.c.customer_id).where(
                touchpoints.c.external_id.in_([f"a{run}", f"b{run}", f"ab{run}"])
            )
            assert set(conn.execute(q).scalars()) == {older}
            # and the documents say so too (they kept the absorbed id before)
            docs = select(touchpoints.c.doc).where(touchpoints.c.external_id.in_([f"a{run}", f"b{run}", f"ab{run}"]))
            ids = {
                (d if isinstance(d, dict) else json.loads(d))["customer"]["customer_id"]
                for d in conn.execute(docs).scalars()
            }
            assert ids == {older}
        with store.begin() as conn:
            conn.execute(text("DELETE FROM test_points"))
    assert survived == runs


def test_merges_inside_one_batch_and_no_chains(store: Store, clock: FakeClock) -> None:
    ing = ingestor(store)
    # one batch: two new customers, then an event joining them: the first one made survives
    ing.ingest("pos", MAPPING, [raw("1", member="MA"), raw("2", openid="oB"), raw("3", member="MA", openid="oB")])
    first = cid_of(store, "member_id", "MA")
    assert cid_of(store, "openid", "oB") == first
    with store.connect() as conn:
        assert set(conn.execute(select(touchpoints.c.customer_id)).scalars()) == {first}
    # C is absorbed into D later; then D into the older first one: C points at the survivor too
    clock.advance(minutes=1)
    ing.ingest("pos", MAPPING, [raw("4", mobile="13800000001")])
    clock.advance(minutes=1)
    ing.ingest("pos", MAPPING, [raw("5", openid="oD")])
    c = cid_of(store, "phone", ing.identity.vault.hash("phone", "13800000001"))
    d = cid_of(store, "openid", "oD")
    ing.ingest("pos", MAPPING, [raw("6", mobile="13800000001", openid="oD")])
    assert rows(store)[d]["merged_into"] == c
    ing.ingest("pos", MAPPING, [raw("7", member="MA", openid="oD")])
    got = rows(store)
    assert got[c]["merged_into"] == first and got[d]["merged_into"] == first and got[first]["merged_into"] is None


def test_the_default_hook_rekeys_declared_columns_only(store: Store, clock: FakeClock) -> None:
    class Plain(Feature):
        name = "plain"

    with store.begin() as conn:
        Plain().on_merge(conn, ["a"], "b", clock())  # nothing declared: nothing to do, no error
