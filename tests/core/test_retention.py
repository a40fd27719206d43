"""Retention per data class (hub/retention.py, ``privacy.retention``): each class loses only what
is older than its retention, in bounded batches, reporting counts per class (log line, an audit row,
the CLI); a dry run changes nothing; aggregates survive (stats compute, anonymous scores stay)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.privacy import OTHER_PHONE, PHONE, PrivacyHub, checkout, privacy_hub, tables_holding
from sqlalchemy import MetaData, func, select

from hub.config import load_config
from hub.console.schema import console_audit
from hub.errors import ConfigError, ConfigErrors
from hub.features.surveys.schema import invitations
from hub.features.surveys.stats import compute_stats
from hub.retention import purge
from hub.store import Store
from hub.store.schema import customers, inbox, quarantine, touchpoints

RETENTION = {
    "raw_payloads": "7d",
    "quarantine": "10d",
    "touchpoints": "30d",
    "survey_answers": "60d",
    "identities": "90d",
    "audit": "12w",
}


@pytest.fixture
def hub(tmp_path: Path, store: Store, clock: Any) -> Iterator[PrivacyHub]:
    h = privacy_hub(tmp_path, store, clock, privacy={"retention": RETENTION})
    h.fill()
    try:
        yield h
    finally:
        h.rt.close()


def count(h: PrivacyHub, table: Any, *where: Any) -> int:
    with h.rt.store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def payloads(h: PrivacyHub) -> int:
    from hub.forget import holds_json

    return count(h, inbox, holds_json(inbox.c.payload))


def snapshot(h: PrivacyHub) -> dict[str, Any]:
    md = MetaData()
    md.reflect(h.rt.store.engine)
    with h.rt.store.connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(select(t)).all())) for t in md.sorted_tables}


def test_each_class_goes_after_its_own_retention(hub: PrivacyHub, clock: Any, caplog: Any) -> None:
    rt = hub.rt
    assert payloads(hub) == 8 and count(hub, quarantine) == 2
    assert purge(rt).total == 0  # nothing is old yet

    clock.advance(days=8)  # raw payloads (7d) go; a new customer's payload stays
    fresh = checkout(
        "R-new", phone="13600000006", openid="oFRESH000000001", member="MEMBER-FRESH-6", paid_at=clock().isoformat()
    )
    assert hub.ingest("pos", fresh, key="receipt").stored == 1
    report = purge(rt)
    assert report.counts == {"raw_payloads": {"inbox.payload_cleared": 8}}
    assert payloads(hub) == 1 and count(hub, quarantine) == 2
    assert tables_holding(rt.store, PHONE).keys() <= {"quarantine.payload"}  # only the quarantine has it now

    clock.advance(days=3)  # day 11: the quarantine (10d) goes
    assert purge(rt).counts == {"quarantine": {"quarantine.deleted": 2}}
    assert tables_holding(rt.store, PHONE) == {} and tables_holding(rt.store, OTHER_PHONE) == {}

    n_tp = count(hub, touchpoints)
    clock.advance(days=20)  # day 31: touchpoints (30d) go, survey answers stay (their class: 60d)
    caplog.set_level(logging.INFO, logger="cxhub")
    report = purge(rt)
    assert report.counts["touchpoints"]["touchpoints.deleted"] == 4  # 2 checkouts, 2 reviews
    assert report.counts["touchpoints"]["feedback_topics.span_cleared"] >= 1
    assert count(hub, touchpoints) == n_tp - 4
    assert count(hub, touchpoints, touchpoints.c.kind == "survey_response") == 2
    assert any("privacy: retention took" in r.getMessage() and "touchpoints" in r.getMessage() for r in caplog.records)
    with rt.store.connect() as conn:
        [row] = conn.execute(
            select(console_audit)
            .where(console_audit.c.action == "privacy.purge")
            .order_by(console_audit.c.id.desc())
            .limit(1)
        ).mappings()
    assert row["detail"]["counts"]["touchpoints"]["touchpoints.deleted"] == 4 and row["actor"] == "system"
    with rt.store.connect() as conn:
        before = compute_stats(conn)[0]

    clock.advance(days=30)  # day 61: survey answers anonymised, the scores kept
    report = purge(rt)
    assert report.counts["survey_answers"] == {
        "touchpoints.anonymised": 2,
        "survey_invitations.anonymised": 2,
        **(
            {"outbox.cancelled": report.counts["survey_answers"]["outbox.cancelled"]}
            if "outbox.cancelled" in report.counts["survey_answers"]
            else {}
        ),
    }
    assert count(hub, invitations, invitations.c.customer_id.is_not(None)) == 1  # the fresh customer's
    with rt.store.connect() as conn:
        after = compute_stats(conn)[0]
    assert after["nps"] == before["nps"] and after["nps_n"] == before["nps_n"] == 2
    assert after["responded"] == before["responded"]

    clock.advance(days=30)  # day 91: customers not seen for 90 days, with no touchpoint left, go
    n_customers = count(hub, customers)
    report = purge(rt)
    assert report.counts["identities"]["customers.deleted"] == 2
    assert report.counts["identities"]["identities.deleted"] >= 6
    assert report.counts["audit"]["console_audit.deleted"] >= 2  # the customer views of day 0
    assert count(hub, customers) == n_customers - 2
    assert tables_holding(rt.store, "MEMBER-FRESH-6")  # the fresh customer (day 8) stays
    with rt.store.connect() as conn:
        kept = (
            conn.execute(select(console_audit.c.action).where(console_audit.c.action.like("privacy.%"))).scalars().all()
        )
        assert kept  # the records of purges stay
        assert compute_stats(conn)[0]["nps_n"] == 2
    assert purge(rt).total == 0  # and then there is nothing left to do


def test_dry_run_counts_exactly_and_changes_nothing(hub: PrivacyHub, clock: Any) -> None:
    clock.advance(days=100)
    before = snapshot(hub)
    dry = purge(hub.rt, dry_run=True)
    assert (
        dry.dry_run
        and dry.total > 0
        and set(dry.counts) >= {"raw_payloads", "touchpoints", "survey_answers", "identities", "quarantine"}
    )
    assert snapshot(hub) == before
    real = purge(hub.rt)
    assert real.counts == dry.counts


def test_batches_are_bounded_and_the_rest_waits_for_the_next_run(tmp_path: Path, store: Store, clock: Any) -> None:
    h = privacy_hub(
        tmp_path, store, clock, privacy={"retention": {"raw_payloads": "1d"}, "batch_size": 3, "max_batches": 2}
    )
    try:
        h.fill()
        clock.advance(days=2)
        first = purge(h.rt)
        assert first.counts == {"raw_payloads": {"inbox.payload_cleared": 6}} and first.unfinished == ["raw_payloads"]
        assert payloads(h) == 2
        second = purge(h.rt)
        assert second.counts == {"raw_payloads": {"inbox.payload_cleared": 2}} and second.unfinished == []
    finally:
        h.rt.close()


def test_forever_keeps_everything_and_the_jobs_run_hourly_on_the_leader(
    tmp_path: Path, store: Store, clock: Any
) -> None:
    h = privacy_hub(tmp_path, store, clock)  # no privacy section: every class but the quarantine kept
    try:
        h.fill()
        jobs = {j.name: j for j in h.rt.jobs}
        assert jobs["privacy-retention"].leader_only and jobs["privacy-retention"].seconds == 3600
        clock.advance(days=3650)
        assert jobs["privacy-retention"].func() == 0
        assert payloads(h) == 8
        assert jobs["quarantine-retention"].func() == 2  # store.quarantine_retention_days' default, 30 days
    finally:
        h.rt.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cxhub.yaml"
    path.write_text("secret_key: k\n" + text, encoding="utf-8")
    return path


def test_retention_values_in_the_config(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path, "privacy:\n  retention: {touchpoints: 365d, audit: 3y, raw_payloads: 12h, identities: forever}\n"
        )
    )
    r = cfg.raw.privacy.retention
    assert r.touchpoints == 365 * 86400 and r.audit == 3 * 365 * 86400 and r.raw_payloads == 12 * 3600
    assert r.identities is None and r.survey_answers is None
    assert not cfg.warnings


@pytest.mark.parametrize("value", ["30", "abc", "0d", "-3d", "5m"])
def test_a_bad_retention_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as err:
        load_config(write(tmp_path, f"privacy:\n  retention:\n    touchpoints: '{value}'\n"))
    assert "privacy.retention.touchpoints" in str(err.value) and "30d" in str(err.value)


def test_an_unknown_class_is_an_error(tmp_path: Path) -> None:
    with pytest.raises((ConfigError, ConfigErrors), match="touchpoint"):
        load_config(write(tmp_path, "privacy:\n  retention: {touchpiont: 30d}\n"))


def test_the_store_setting_still_works_and_says_it_is_deprecated(tmp_path: Path) -> None:
    from hub.retention import quarantine_days

    cfg = load_config(write(tmp_path, "store: {quarantine_retention_days: 14}\n"))
    assert quarantine_days(cfg) == 14
    assert any("deprecated" in w and "privacy.retention.quarantine" in w for w in cfg.warnings)
    both = load_config(
        write(tmp_path, "store: {quarantine_retention_days: 14}\nprivacy: {retention: {quarantine: 45d}}\n")
    )
    assert quarantine_days(both) == 45
    forever = load_config(write(tmp_path, "privacy: {retention: {quarantine: forever}}\n"))
    assert quarantine_days(forever) is None
