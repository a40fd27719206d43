"""The ingest hot path: what the speed-ups rely on, each checked against the slow, obvious form.

- touchpoint ids written out from SHA-1 equal ``uuid.uuid5``;
- bulk inserts through ``json_to_recordset`` (PostgreSQL) skip conflicts and return what they
  inserted; ``copy_new_rows`` falls back when a row exists after all;
- the document serialised before identity resolution gets the resolved customer spliced in;
- the cyclic GC pause is reentrant and restores the collector's state;
- ``ingest_stream`` commits in order, stops at a failed commit, pauses the collector throughout.
"""

from __future__ import annotations

import gc
import json
import random
import string
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from hub.ingest import TOUCHPOINT_COLUMNS, Ingestor, _event_row
from hub.mapping import load_mapping_text
from hub.model import TOUCHPOINT_NAMESPACE, TouchpointEvent, touchpoint_id
from hub.sdk.collector import gc_paused
from hub.sdk.connector import Batch, RawRecord
from hub.store import Store, bulk_insert_ignore, copy_new_rows, dumps
from hub.store.cursors import load_state
from hub.store.schema import customers, inbox, touchpoints

MAPPING = load_mapping_text(
    """\
name: t
kind: transaction
fields:
  occurred_at: {path: at, type: datetime}
  org.store: store
  attributes.note: note
  customer.identities: {member_id: member, phone: mobile}
""",
    "t.yaml",
)
SECRET = b"test-secret-key"


def rec(ext: str, **payload: object) -> RawRecord:
    return RawRecord("pos", ext, {"at": "2026-11-01 10:00:00", "store": "S1", **payload})


def count(store: Store, table) -> int:  # type: ignore[no-untyped-def]
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_touchpoint_id_is_uuid5() -> None:
    rnd = random.Random(7)
    alphabet = string.printable + "生鲜乳制品\x1f\u00e9"
    for _ in range(5000):
        source = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12)))
        ext = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 40)))
        assert touchpoint_id(source, ext) == str(uuid.uuid5(TOUCHPOINT_NAMESPACE, f"{source}\x1f{ext}"))


def test_dumps_matches_the_stdlib_and_falls_back_for_what_orjson_refuses() -> None:
    data = {"a": Decimal("1.50"), 1: "x", "t": datetime(2026, 1, 1, 8, tzinfo=UTC), "cn": "生鲜", "s": (1, 2)}
    assert json.loads(dumps(data)) == {
        "a": "1.50",
        "1": "x",
        "t": "2026-01-01T08:00:00+00:00",
        "cn": "生鲜",
        "s": [1, 2],
    }
    assert "生鲜" in dumps(data)  # not \\u-escaped
    assert json.loads(dumps({"big": 2**70})) == {"big": 2**70}  # beyond 64 bits: stdlib fallback
    deep: list = []
    cur = deep
    for _ in range(300):  # deeper than orjson's 254 levels
        cur.append([])
        cur = cur[0]
    assert dumps(deep).count("[") == 301
    with pytest.raises(TypeError, match="cannot store a object"):
        dumps({"x": object()})


def test_bulk_insert_ignore_skips_conflicts_and_returns_what_it_inserted(store: Store) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        {
            "source": "s",
            "external_id": f"e{i}",
            "received_at": now,
            "status": "stored",
            "touchpoint_id": None,
            "payload": {"n": i, "note": 'tab\there \\ "q" 生鲜'} if i % 2 else None,
        }
        for i in range(100)  # above the small-batch threshold: the json_to_recordset path on PostgreSQL
    ]
    with store.begin() as conn:
        first = bulk_insert_ignore(conn, inbox, rows[:60], ["source", "external_id"], ["external_id"])
    with store.begin() as conn:
        second = bulk_insert_ignore(conn, inbox, rows, ["source", "external_id"], ["external_id"])
    assert sorted(r[0] for r in first) == sorted(f"e{i}" for i in range(60))
    assert sorted(r[0] for r in second) == sorted(f"e{i}" for i in range(60, 100))
    with store.connect() as conn:
        got = conn.execute(select(inbox.c.payload, inbox.c.received_at).where(inbox.c.external_id == "e7")).one()
    assert got.payload == {"n": 7, "note": 'tab\there \\ "q" 生鲜'}
    assert got.received_at == now


def test_copy_new_rows_falls_back_when_a_row_exists_after_all(store: Store) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [{"id": f"c-{i:04d}", "created_at": now, "opted_out": False, "merged_into": None} for i in range(50)]
    with store.begin() as conn:
        copy_new_rows(conn, customers, rows[:20], ["id"])
    with store.begin() as conn:  # 20 of these exist: COPY fails, the savepoint absorbs it
        copy_new_rows(conn, customers, rows, ["id"])
        conn.execute(customers.insert().values(id="after", created_at=now, opted_out=False))
    assert count(store, customers) == 51  # and the transaction went on


def test_the_customer_is_spliced_into_the_prepared_document() -> None:
    ev = MAPPING.apply(
        {"at": "2026-11-01 10:00:00", "member": "M1", "note": '"customer_id":null'},
        source="pos",
        external_id='x","customer_id":null',
    )
    assert ev is not None
    doc = ev.model_dump_json()  # as prepare() serialises it: no customer yet
    ev.customer.customer_id = "c-1"
    stored = _event_row(ev, doc)[TOUCHPOINT_COLUMNS.index("doc")]
    assert json.loads(stored) == json.loads(ev.model_dump_json())
    assert json.loads(stored)["attributes"]["note"] == '"customer_id":null'  # data untouched
    assert TouchpointEvent.model_validate_json(stored).customer.customer_id == "c-1"


def test_stored_documents_carry_the_resolved_customer(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    batch = [rec(f"{i}", member=f"M{i % 7}", mobile=f"1380000{i % 7:04d}") for i in range(40)]
    ing.ingest("pos", MAPPING, batch)
    with store.connect() as conn:
        rows = conn.execute(select(touchpoints.c.customer_id, touchpoints.c.doc)).all()
    assert len(rows) == 40
    for cid, doc in rows:
        doc = doc if isinstance(doc, dict) else json.loads(doc)
        assert cid is not None and doc["customer"]["customer_id"] == cid
        assert all(not i["value"].startswith("138") for i in doc["customer"]["identities"])  # hashed
    assert len({cid for cid, _ in rows}) == 7


def test_gc_pause_is_reentrant_across_threads_and_restores_the_collector() -> None:
    assert gc.isenabled()
    release = threading.Event()
    inside = threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with gc_paused():
        assert not gc.isenabled()
        t.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other thread still pauses it
    release.set()
    t.join(5)
    assert gc.isenabled()
    gc.disable()  # an application that runs without the collector keeps it off
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def _batches(n: int, size: int) -> list[Batch]:
    return [Batch([rec(f"{b}-{i}", member=f"M{i}") for i in range(size)], {"batch": b}) for b in range(n)]


def test_ingest_stream_commits_every_batch_in_order(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    results = list(ing.ingest_stream("pos", MAPPING, iter(_batches(5, 30))))
    assert [r.stored for r in results] == [30] * 5
    assert count(store, touchpoints) == 150
    assert load_state(store, "pos") == {"batch": 4}
    assert gc.isenabled()


def test_ingest_stream_stops_at_a_failed_commit_and_keeps_the_last_good_state(store: Store) -> None:
    calls = {"n": 0}

    def hook(ctx, events) -> None:  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("hook failed")

    hook.name = "failing"  # type: ignore[attr-defined]
    ing = Ingestor(store, SECRET, hooks=[hook], clock=store.clock)
    got = []
    with pytest.raises(RuntimeError, match="hook failed"):
        for r in ing.ingest_stream("pos", MAPPING, iter(_batches(6, 20))):
            got.append(r.stored)
    assert got == [20, 20]
    assert load_state(store, "pos") == {"batch": 1}
    assert count(store, touchpoints) == 40  # batch 2 rolled back; 3.. never committed
    assert gc.isenabled()


def test_ingest_stream_pauses_the_collector_while_reading_too(store: Store) -> None:
    seen: list[bool] = []

    def source():  # type: ignore[no-untyped-def]
        for b in _batches(3, 5):
            seen.append(gc.isenabled())
            yield b

    ing = Ingestor(store, SECRET, clock=store.clock)
    assert [r.stored for r in ing.ingest_stream("pos", MAPPING, source())] == [5, 5, 5]
    assert seen == [False, False, False]
    assert gc.isenabled()


def test_ingest_stream_closed_early_keeps_what_was_committed(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    stream = ing.ingest_stream("pos", MAPPING, iter(_batches(4, 10)))
    first = next(stream)
    stream.close()
    assert first.stored == 10
    assert load_state(store, "pos") == {"batch": 0}
    assert count(store, touchpoints) == 10
    assert gc.isenabled()


def test_new_customer_ids_are_random_version_4_uuids() -> None:
    from hub.identity import _new_customer_id

    ids = {_new_customer_id() for _ in range(20000)}
    assert len(ids) == 20000
    for i in list(ids)[:500]:
        u = uuid.UUID(i)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, i)


def test_identity_hashes_are_unchanged_by_the_fast_paths() -> None:
    """Stored hashes must match across versions: the reference is HMAC-SHA256 over the value
    normalised with the separator regex, first 32 hex characters."""
    import hashlib
    import hmac
    import re

    from hub.privacy import Vault

    secret = b"test-secret-key"
    key = hashlib.sha256(b"cxhub-identity-hash\x00" + secret).digest()

    def reference(namespace: str, value: str) -> str:
        v = value.strip()
        if namespace in ("phone", "mobile"):
            v = re.sub(r"[\s\-()]", "", v)
            if v.startswith("+86"):
                v = v[3:]
            elif v.startswith("0086"):
                v = v[4:]
            elif len(v) == 13 and v.startswith("86"):
                v = v[2:]
        elif namespace == "email":
            v = v.lower()
        return "h:" + hmac.new(key, f"{namespace}\x00{v}".encode(), hashlib.sha256).hexdigest()[:32]

    vault = Vault(secret)
    values = ["13800000000", " +86 138-0000-0000 ", "008613800000001", "8613800000002", "(138) 0000 0003"]
    values += ["１３８００００００００", "A@Example.com", "M0001", "138 0000\t0004"]
    for ns in ("phone", "mobile", "email", "member_id"):
        for value in values:
            assert vault.hash(ns, value) == reference(ns, value), (ns, value)
    assert vault.hash("phone", "+86 138-0000-0000") == vault.hash("phone", "13800000000")


def test_contacts_are_sealed_with_aes_gcm_and_older_fernet_tokens_still_open() -> None:
    from hub.privacy import Vault

    vault = Vault(SECRET)
    token = vault.encrypt("phone", "+86 138-0000-0000")
    assert token.startswith("v2:") and "13800000000" not in token
    assert vault.decrypt(token) == "13800000000"
    assert vault.encrypt("phone", "13800000000") != vault.encrypt("phone", "13800000000")  # fresh nonce
    legacy = vault._fernet.encrypt(b"13800000001").decode()  # what earlier versions stored
    assert vault.decrypt(legacy) == "13800000001"
    for bad in (Vault(b"another-key").encrypt("phone", "13800000000"), "v2:" + token[3:-4] + "AAAA", "v2:!!"):
        with pytest.raises(ValueError, match="cannot be decrypted with this secret key"):
            vault.decrypt(bad)


def test_a_long_stream_still_collects_cyclic_garbage(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.sdk.collector as collector

    monkeypatch.setattr(collector, "_GC_MAX_PAUSE_S", 0.0)
    collections: list[int] = []

    def counter(phase: str, info: dict) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    gc.callbacks.append(counter)
    try:
        ing = Ingestor(store, SECRET, clock=store.clock)
        assert [r.stored for r in ing.ingest_stream("pos", MAPPING, iter(_batches(3, 5)))] == [5, 5, 5]
    finally:
        gc.callbacks.remove(counter)
    assert collections.count(2) >= 3  # a full collection after each batch, although paused
    assert gc.isenabled()


def test_identity_stored_by_another_process_after_the_lookup_is_adopted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the optimistic COPY of identities must survive: between this batch's lookup and its
    insert, another process stored one of its identities. The COPY fails on it, the rows go in by
    insert-ignore, and the event follows the other process's customer."""
    from hub.identity import IdentityResolver
    from hub.store.schema import identities

    ing = Ingestor(store, SECRET, clock=store.clock)
    ing.ingest("pos", MAPPING, [rec("first", member="M1")])  # "the other process"
    with store.connect() as conn:
        theirs = conn.execute(select(identities.c.customer_id).where(identities.c.value == "M1")).scalar_one()
    real_lookup = IdentityResolver._lookup
    calls = {"n": 0}

    def stale_lookup(self, conn, keys):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return {} if calls["n"] == 1 else real_lookup(self, conn, keys)  # the first lookup ran before it

    monkeypatch.setattr(IdentityResolver, "_lookup", stale_lookup)
    batch = [rec(f"r{i}", member=f"M{i}") for i in range(1, 21)]  # 20 new rows: the COPY path on PostgreSQL
    assert ing.ingest("pos", MAPPING, batch).stored == 20
    with store.connect() as conn:
        got = dict(conn.execute(select(touchpoints.c.external_id, touchpoints.c.customer_id)).all())
        owners = conn.execute(select(func.count()).select_from(identities).where(identities.c.value == "M1")).scalar()
    assert got["r1"] == theirs == got["first"]
    assert len({got[f"r{i}"] for i in range(1, 21)}) == 20
    assert owners == 1
    assert count(store, identities) == 20


def test_a_large_batch_with_records_seen_before_falls_back_and_dedups(store: Store) -> None:
    ing = Ingestor(store, SECRET, clock=store.clock)
    first = ing.ingest("pos", MAPPING, [rec(f"{i}", member=f"M{i}") for i in range(30)])
    again = ing.ingest("pos", MAPPING, [rec(f"{i}", member=f"M{i}") for i in range(20, 50)])  # 10 seen
    assert (first.stored, again.stored, again.duplicates) == (30, 20, 10)
    assert count(store, touchpoints) == 50
    assert count(store, inbox) == 50


# ---------------------------------------------------------------- the stream's unwaited COPY


class _Early:
    """A hook that works from the events alone (reads_touchpoints = False), as surveys and
    feedback do; records how many touchpoints its transaction sees."""

    name = "early"
    reads_touchpoints = False

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def __call__(self, ctx, events) -> None:  # type: ignore[no-untyped-def]
        n = ctx.conn.execute(select(func.count()).select_from(touchpoints)).scalar_one()
        self.seen.append((len(events), n))


def test_stream_maps_the_next_batch_while_postgresql_writes_the_last(store: Store, deferred_copies: list[int]) -> None:
    """On PostgreSQL batch N is not committed yet while batch N+1 is read and mapped; elsewhere
    each batch commits before the next is read. Every batch lands either way."""
    sent = deferred_copies
    visible: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        for b in _batches(4, 20):
            visible.append(count(store, touchpoints))  # what another connection sees
            yield b

    hook = _Early()
    ing = Ingestor(store, SECRET, hooks=[hook], clock=store.clock)
    assert [r.stored for r in ing.ingest_stream("pos", MAPPING, source())] == [20] * 4
    assert count(store, touchpoints) == 80 and load_state(store, "pos") == {"batch": 3}
    # the early hook ran before its batch's rows were written, after the earlier batches'
    assert hook.seen == [(20, 0), (20, 20), (20, 40), (20, 60)]
    if store.is_sqlite:
        assert sent == [] and visible == [0, 20, 40, 60]
    else:
        assert sent == [20] * 4
        assert visible == [0, 0, 20, 40]  # batch N is in flight while N+1 is read
    assert store.engine.pool.checkedout() == 0
    with store.connect() as conn:
        docs = [json.loads(d) if isinstance(d, str) else d for (d,) in conn.execute(select(touchpoints.c.doc))]
    assert all(d["customer"]["customer_id"] for d in docs)


def test_a_hook_that_reads_touchpoints_keeps_the_waited_write(store: Store, deferred_copies: list[int]) -> None:
    sent = deferred_copies
    seen = []

    class Reader:
        name = "reader"  # no reads_touchpoints attribute: it may read them, so it runs after them

        def __call__(self, ctx, events) -> None:  # type: ignore[no-untyped-def]
            seen.append(ctx.conn.execute(select(func.count()).select_from(touchpoints)).scalar_one())

    ing = Ingestor(store, SECRET, hooks=[Reader(), _Early()], clock=store.clock)
    assert [r.stored for r in ing.ingest_stream("pos", MAPPING, iter(_batches(3, 20)))] == [20] * 3
    assert seen == [20, 40, 60] and sent == []


def test_a_deferred_copy_that_conflicts_is_stored_again_the_careful_way(
    pg_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Touchpoints already stored without their inbox rows (restored from a backup, say): the
    unwaited COPY fails at commit, the batch is rolled back and committed again through the
    insert-ignore fallback; nothing is lost or doubled."""
    ing = Ingestor(pg_store, SECRET, clock=pg_store.clock)
    list(ing.ingest_stream("pos", MAPPING, iter(_batches(1, 30))))
    with pg_store.begin() as conn:
        conn.execute(inbox.delete().where(inbox.c.external_id.in_([f"0-{i}" for i in range(20)])))
    again = _batches(2, 30)  # batch 0 again: 10 duplicates, and 20 whose touchpoints exist
    with caplog.at_level("INFO", logger="cxhub.ingest"):
        results = list(ing.ingest_stream("pos", MAPPING, iter(again)))
    assert "storing it again the careful way" in caplog.text
    assert [r.stored for r in results] == [20, 30]
    assert results[0].duplicates == 10
    assert count(pg_store, touchpoints) == 60
    assert count(pg_store, inbox) == 60
    assert load_state(pg_store, "pos") == {"batch": 1}
    assert pg_store.engine.pool.checkedout() == 0


def test_a_batch_too_small_for_the_fallback_threshold_conflicting_is_handled(pg_store: Store) -> None:
    """Under 16 rows nothing is deferred; the same conflict goes through copy_new_rows directly."""
    ing = Ingestor(pg_store, SECRET, clock=pg_store.clock)
    list(ing.ingest_stream("pos", MAPPING, iter(_batches(1, 5))))
    with pg_store.begin() as conn:
        conn.execute(inbox.delete())
    assert [r.stored for r in ing.ingest_stream("pos", MAPPING, iter(_batches(1, 5)))] == [5]
    assert count(pg_store, touchpoints) == 5


def test_a_failing_read_commits_the_batch_in_flight_first(store: Store) -> None:
    def source():  # type: ignore[no-untyped-def]
        yield from _batches(2, 20)
        raise ConnectionError("source went away")

    ing = Ingestor(store, SECRET, hooks=[_Early()], clock=store.clock)
    got = []
    with pytest.raises(ConnectionError):
        for r in ing.ingest_stream("pos", MAPPING, source()):
            got.append(r.stored)
    assert got == [20, 20]  # batch 1 was in flight when the read failed: committed and yielded first
    assert load_state(store, "pos") == {"batch": 1}
    assert count(store, touchpoints) == 40
    assert store.engine.pool.checkedout() == 0


def test_a_deferred_copy_that_cannot_land_raises_and_keeps_the_last_good_state(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the careful retry fails too (the database went away), the error surfaces and the batch
    is not committed."""
    from hub.store import DeferredCopy

    ing = Ingestor(pg_store, SECRET, clock=pg_store.clock)
    real_wait = DeferredCopy.wait
    calls = {"n": 0}

    def flaky(self) -> None:  # type: ignore[no-untyped-def]
        calls["n"] += 1
        real_wait(self)
        if calls["n"] == 2:
            raise RuntimeError("connection lost")

    def broken_commit(batch, state=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("database is gone")

    monkeypatch.setattr(DeferredCopy, "wait", flaky)
    monkeypatch.setattr(ing, "commit", broken_commit)
    got = []
    with pytest.raises(RuntimeError, match="database is gone"):
        for r in ing.ingest_stream("pos", MAPPING, iter(_batches(3, 20))):
            got.append(r.stored)
    assert got == [20]
    assert load_state(pg_store, "pos") == {"batch": 0}
    assert count(pg_store, touchpoints) == 20
    assert pg_store.engine.pool.checkedout() == 0
