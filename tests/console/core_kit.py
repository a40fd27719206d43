"""What the tests of the console's core pages share: a hub with a scheduled pull source beside the
kit's push source, and a bulk of touchpoints on PostgreSQL for the query plans."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kit.console import ConsoleKit, console_config
from kit.runtime import build_runtime
from sqlalchemy import text

from hub.sdk.testing import FakeClock
from hub.store import Store

FEED_LINE = (
    '{{"review_id": "f{}", "created_at": "2026-11-22 10:00:00", "rating": 5, "content": "好", "store_code": "S001"}}\n'
)
#: a review its mapping refuses (the rating is no number): quarantined
BAD = {"review_id": "bad-1", "created_at": "2026-11-22T10:00:00+08:00", "rating": "five", "store_code": "S001"}
#: touchpoints of the query-plan tests (CXHUB_PLAN_ROWS=1000000 for the size of the brief)
PLAN_ROWS = int(os.environ.get("CXHUB_PLAN_ROWS", "300000"))
#: 10:00 in Shanghai on the day the kit's reviews are dated
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture(name="ops")
def ops_fixture(tmp_path: Path, clock: FakeClock) -> Iterator[ConsoleKit]:
    """The console's hub with a scheduled pull source (``feed``, a JSON-lines file, hourly) beside
    the push source ``reviews``; the clock an hour after the kit's reviews."""
    feed = tmp_path / "feed.jsonl"
    feed.write_text(FEED_LINE.format(1), encoding="utf-8")
    cfg = console_config(f"sqlite:///{tmp_path / 'ops.db'}")
    cfg["sources"]["feed"] = {
        "connector": "jsonl",
        "mapping": "generic_review",
        "options": {"path": str(feed), "id_path": "review_id"},
        "schedule": {"every": "1h"},
    }
    clock.set(NOW)
    rt = build_runtime(cfg, path=tmp_path / "cxhub.yaml", clock=clock)
    kit = ConsoleKit(rt)
    try:
        yield kit
    finally:
        rt.close()


def seed_touchpoints(store: Store, n: int, *, stores: int = 200, customers: int = 100_000) -> None:
    """``n`` touchpoints over a year on PostgreSQL (one INSERT ... SELECT), then ANALYZE: the
    planner's view of a deployment at that size."""
    with store.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO touchpoints (id, source, external_id, kind, channel, occurred_at, received_at,
                                         customer_id, store, doc)
                SELECT md5(i::text), 'src' || (i % 5), 'x' || i,
                       (ARRAY['transaction','review','survey_response','message','follow'])[1 + i % 5],
                       (ARRAY['pos','wechat','meituan','alipay'])[1 + i % 4],
                       timestamptz '2026-11-22 03:00+00' - (i * (interval '1 year' / :n)),
                       timestamptz '2026-11-22 03:00+00' - (i * (interval '1 year' / :n)),
                       'c' || (i % :customers), 'S' || lpad((i % :stores)::text, 3, '0'), '{}'
                FROM generate_series(1, :n) AS i
                """
            ),
            {"n": n, "stores": stores, "customers": customers},
        )
        conn.execute(
            text(
                "INSERT INTO identities (namespace, scope, value, customer_id, first_seen) "
                "SELECT 'member_id', '', 'M' || i, 'c' || i, now() FROM generate_series(0, :c - 1) AS i"
            ),
            {"c": customers},
        )
        conn.execute(
            text(
                "INSERT INTO inbox (source, external_id, received_at, status) "
                "SELECT source, external_id, received_at, 'stored' FROM touchpoints"
            )
        )
    with store.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def explain(store: Store, stmt: Any) -> str:
    """PostgreSQL's plan of ``stmt`` (its parameters bound as literals)."""
    from sqlalchemy.dialects import postgresql

    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with store.connect() as conn:
        return "\n".join(r[0] for r in conn.execute(text("EXPLAIN ANALYZE " + sql)))
