"""Bursts of pushed records through the columnar path store what the row path stores.

Hypothesis makes bursts of checkouts as a webhook receives them: each record with its own receipt
time (in any time zone), ids repeated within and across bursts, voided checkouts (filtered), bad
times and totals (quarantined), members sharing phones and openids (one customer), an identity
pointing at another member's customer (a merge, the row path's resolver), and records the source
rejected. The same bursts go through ``Ingestor.ingest`` into one store and through
:class:`BurstIngest` into another (SQLite and PostgreSQL); the stores are compared with their
receipt times.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.pull import SECRET, reset_store, store_snapshot

from hub.columnar.bursts import BurstIngest
from hub.columnar.engine import ColumnarIngest
from hub.group_commit import GroupCommitWriter
from hub.ingest import Ingestor
from hub.mapping import load_mapping_file, preset_path
from hub.sdk.connector import RawRecord, Rejected
from hub.store import Store

MAPPING = load_mapping_file(preset_path("retail_checkout"))  # type: ignore[arg-type]
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]


@st.composite
def checkout(draw: st.DrawFn) -> RawRecord:
    n = draw(st.integers(0, 30))
    member = draw(st.integers(0, 6))
    payload: dict[str, Any] = {
        "receipt_no": f"R{n:03d}",
        "status": draw(st.sampled_from(["PAID", "PAID", "PAID", "VOID"])),
        "paid_at": draw(st.sampled_from(["2026-03-01 10:00:00", "2026-03-01T02:00:00Z", "yesterday", None])),
        "store": {"code": draw(st.sampled_from(["S01", "S02", None]))},
        "total": draw(st.sampled_from(["12.50", "0", "12,5", None])),
        "member": {
            "number": draw(st.sampled_from([f"M{member}", None])),
            "mobile": draw(st.sampled_from([f"1380000000{member}", f"1380000000{(member + 1) % 7}", None])),
        },
        "items": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"sku": st.sampled_from(["A", "B"]), "cat": st.sampled_from(["10", "20", "99"])},
                    optional={"qty": st.sampled_from([1, "2", "x"])},
                ),
                max_size=3,
            )
        ),
    }
    at = START + timedelta(milliseconds=draw(st.integers(0, 5000)))
    return RawRecord("pos", payload["receipt_no"], payload, at.astimezone(draw(st.sampled_from(ZONES))))


BURSTS = st.lists(st.tuples(st.lists(checkout(), min_size=1, max_size=25), st.integers(0, 2)), min_size=1, max_size=4)


def _rejects(n: int) -> list[Rejected]:
    return [Rejected(f"bad{i}", {"raw": "<xml"}, "body is not JSON") for i in range(n)]


@pytest.fixture(scope="module")
def row_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('row') / 'row.db'}")
    store.migrate()
    yield store
    store.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bursts=BURSTS)
def test_a_burst_as_columns_stores_what_the_row_path_stores(bursts: Any, store: Store, row_store: Store) -> None:
    reset_store(store)
    reset_store(row_store)
    rows = Ingestor(row_store, SECRET)
    columns = BurstIngest(Ingestor(store, SECRET), columnar_min=1)
    for records, bad in bursts:
        ordered = sorted(records, key=lambda r: r.external_id)
        expected = rows.ingest("pos", MAPPING, ordered, rejected=_rejects(bad))
        got = columns.ingest("pos", MAPPING, ordered, rejected=_rejects(bad))
        assert (got.read, got.stored, got.duplicates, got.filtered, got.quarantined) == (
            expected.read,
            expected.stored,
            expected.duplicates,
            expected.filtered,
            expected.quarantined,
        )
    assert store_snapshot(store, receipts=True) == store_snapshot(row_store, receipts=True)


def test_the_group_commit_writer_takes_the_columnar_path_for_bursts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    commit = ColumnarIngest.commit

    def counting(self: ColumnarIngest, batch: Any, state: Any) -> Any:
        taken.append(batch.read)
        return commit(self, batch, state)

    monkeypatch.setattr(ColumnarIngest, "commit", counting)
    writer = GroupCommitWriter(Ingestor(store, SECRET), writers=1)
    writer.bursts.columnar_min = 8
    try:
        one = writer.submit("pos", MAPPING, [_record(0)]).result(10)
        burst = writer.submit("pos", MAPPING, [_record(i) for i in range(1, 21)]).result(10)
    finally:
        writer.close()
    assert (one.stored, burst.stored) == (1, 20)
    assert taken == [20]  # the single push took the row path
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM touchpoints").scalar_one() == 21


def test_a_mapping_the_vector_compiler_cannot_express_keeps_the_row_path(store: Store) -> None:
    from hub.mapping import load_mapping_text

    mapping = load_mapping_text(
        "name: r\nkind: review\nfields:\n  occurred_at: {path: paid_at, type: datetime}\n"
        "  feedback.rating: {path: stars, type: decimal}\n",
        "r",
    )
    bursts = BurstIngest(Ingestor(store, SECRET), columnar_min=1)
    assert bursts.vector(mapping) is None
    assert bursts.ingest("pos", mapping, [_record(i) for i in range(3)]).stored == 3


def _record(i: int) -> RawRecord:
    payload = {
        "receipt_no": f"B{i:04d}",
        "status": "PAID",
        "paid_at": "2026-03-01 10:00:00",
        "store": {"code": "S01"},
        "total": "9.90",
        "stars": 4,
        "member": {"number": f"M{i % 3}"},
        "items": [{"sku": "A", "cat": "10"}],
    }
    return RawRecord("pos", payload["receipt_no"], payload, START + timedelta(seconds=i))
