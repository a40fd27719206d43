"""Which pull syncs overlap the next read with the last commit (``PullSource.overlap_commits``):
local files and database cursors do; sources whose reads wait on a remote API keep every
transaction closed across a read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit.pull import RuntimeFactory
from sqlalchemy import func, select

from connectors.http_feed import HttpFeedSource
from connectors.jsonl import JsonlSource
from connectors.sql import SqlSource
from hub.store import Store
from hub.store.schema import touchpoints
from hub.sync import run_sync


def test_fast_sources_overlap_and_remote_feeds_do_not() -> None:
    assert JsonlSource.overlap_commits and SqlSource.overlap_commits
    assert not HttpFeedSource.overlap_commits


@pytest.mark.parametrize("overlap", [True, False])
def test_run_sync_overlaps_only_when_the_source_allows_it(
    overlap: bool,
    pg_store: Store,
    make_runtime: RuntimeFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deferred_copies: list[int],
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    lines = [
        {"receipt_no": f"R{i}", "paid_at": "2026-11-01 10:00:00", "status": "PAID", "store": {"code": "S1"}}
        for i in range(60)
    ]
    (drop / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setattr(JsonlSource, "overlap_commits", overlap)
    sent = deferred_copies
    rt = make_runtime(
        {
            "pos": {
                "connector": "jsonl",
                "mapping": "retail_checkout",
                "options": {
                    "path": str(drop),
                    "id_path": "receipt_no",
                    "batch_size": 20,
                    "columnar": False,
                },  # the row path's overlap
            }
        },
        store_url=pg_store.url,
    )
    result = run_sync(rt, "pos")
    assert result.stored == 60
    assert sent == ([20, 20, 20] if overlap else [])
    with rt.store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(touchpoints)).scalar_one() == 60
