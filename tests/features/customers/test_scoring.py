"""Scoring through the real ingest and store (SQLite and PostgreSQL): thin and bad data get a
defined score that says "insufficient history"; the planted effect (breached cases) is ranked."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from hub.features.customers.evaluation import auc, planted_effect
from hub.features.customers.schema import customer_scores
from hub.runtime import Runtime
from hub.sdk.testing import FakeClock

from .conftest import feed, tx

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cx.db'}"
        return
    from kit.databases import temporary_postgres_database

    with temporary_postgres_database() as url:
        yield url


def scores(rt: Runtime) -> dict[str, dict[str, Any]]:
    with rt.store.connect() as conn:
        rows = conn.execute(select(customer_scores)).mappings()
        return {r["customer_id"]: dict(r) for r in rows}


def cid_of(rt: Runtime, member: str) -> str:
    from hub.store.schema import identities

    with rt.store.connect() as conn:
        return str(
            conn.execute(
                select(identities.c.customer_id).where(
                    identities.c.namespace == "member_id", identities.c.value == member
                )
            ).scalar_one()
        )


def regulars(n: int = 30) -> list[dict[str, Any]]:
    """Enough repeat buyers for the model to fit."""
    rng = random.Random(3)
    out = []
    for c in range(n):
        for k in range(rng.randint(2, 9)):
            day = NOW - timedelta(days=rng.randint(1, 330))
            out.append(tx(f"reg{c}-{k}", day.isoformat(), f"R{c}", total=f"{rng.randint(20, 300)}.00"))
    return out


def test_thin_and_bad_data_get_a_defined_score_with_insufficient_history(
    make_hub: Any, store_url: str, clock: FakeClock
) -> None:
    clock.set(NOW)
    rt = make_hub(store_url)
    feed(
        rt,
        *regulars(),
        tx("one", "2026-10-01T10:00:00+08:00", "ONE"),
        tx("nocust", "2026-10-01T10:00:00+08:00", None),
        tx("rf-buy", "2026-09-01T10:00:00+08:00", "REF", total="80.00"),
        tx("rf", "2026-09-03T10:00:00+08:00", "REF", total="80.00", kind="refund"),
        tx("neg", "2026-09-03T10:00:00+08:00", "NEG", total="-50.00"),
        tx("noamt", "2026-09-03T10:00:00+08:00", "NOAMT", total=None),
        tx("zero1", "2026-09-03T10:00:00+08:00", "ZERO", total="0"),
    )
    report = rt.features["customers"].score()
    assert report.model is not None and report.unattributed == 1
    got = scores(rt)
    for member, detail in [
        ("ONE", "1 purchase day"),
        ("REF", "1 refund"),
        ("NEG", "0 purchase days"),
        ("NOAMT", "without a positive amount"),
        ("ZERO", "without a positive amount"),
    ]:
        s = got[cid_of(rt, member)]
        assert s["insufficient"] is True, member
        assert 0 < s["risk"] < 1, member
        first = s["reasons"][0]
        assert first["signal"] == "insufficient_history" and first["text"].startswith("insufficient history"), member
        assert detail in first["text"], (member, first["text"])
    regular = got[cid_of(rt, "R0")]
    assert regular["insufficient"] is False and regular["p_alive"] is not None and regular["reasons"]
    assert report.customers == len(got) == 35


def test_without_a_model_every_score_says_insufficient_history(make_hub: Any, clock: FakeClock) -> None:
    clock.set(NOW)
    rt = make_hub()
    feed(rt, tx("a", "2026-10-01T10:00:00+08:00", "A"), tx("b", "2026-10-02T10:00:00+08:00", "B"))
    report = rt.features["customers"].score()
    assert report.model is None and "bought twice" in (report.model_error or "")
    for s in scores(rt).values():
        assert s["insufficient"] and s["reasons"][0]["signal"] == "insufficient_history" and 0 < s["risk"] < 1


def test_planted_effect_breached_cases_rank_the_at_risk_customers_first(make_hub: Any, clock: FakeClock) -> None:
    records, at_risk = planted_effect(240, NOW)
    reviews = [r for r in records if r["kind"] == "review"]
    rt = make_hub(
        feedback={
            "org": {},
            "sla": {"high": {"ack": "10m", "resolve": "1h"}, "medium": {"ack": "10m", "resolve": "1h"}},
        }
    )
    # reviews arrive when they were written, so their cases are opened then and breach their SLA
    for r in sorted(reviews, key=lambda r: r["at"]):
        clock.set(datetime.fromisoformat(r["at"]))
        feed(rt, r)
    clock.set(NOW)
    feed(rt, *[r for r in records if r["kind"] != "review"])
    rt.features["customers"].score()
    got = scores(rt)
    members = sorted({r["member"] for r in records})
    risk = np.array([got[cid_of(rt, m)]["risk"] for m in members])
    label = np.array([m in at_risk for m in members])
    value = auc(risk, label)
    assert value >= 0.8, value
    top = got[cid_of(rt, sorted(at_risk)[0])]
    assert any(r["signal"] == "breached_case" for r in top["reasons"])
