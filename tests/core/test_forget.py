"""Forgetting a customer (hub/forget.py): found by phone (keyed hash), openid or id; afterwards no
table of the database holds their phone number, its hash, their openid, member number or customer
id (every text and JSON column of every table is scanned: a table added later is covered); the
other customer is untouched; the audit row holds counts and a reference only; stats still compute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.privacy import (
    MEMBER,
    OPENID,
    OTHER_MEMBER,
    OTHER_OPENID,
    OTHER_PHONE,
    PHONE,
    PrivacyHub,
    privacy_hub,
    tables_holding,
)
from sqlalchemy import func, select

from hub.console.schema import console_audit
from hub.features.feedback.schema import cases
from hub.features.surveys.stats import compute_stats
from hub.forget import ForgetError, Lookup, forget_in
from hub.store import Store
from hub.store.schema import outbox, touchpoints


@pytest.fixture
def hub(tmp_path: Path, store: Store, clock: Any) -> Iterator[PrivacyHub]:
    h = privacy_hub(tmp_path, store, clock)
    h.fill()
    try:
        yield h
    finally:
        h.rt.close()


def personal(h: PrivacyHub, phone: str, openid: str, member: str, cid: str) -> dict[str, dict[str, int]]:
    values = {
        "phone": phone,
        "hash": h.vault.hash("phone", phone),
        "openid": openid,
        "member": member,
        "customer": cid,
    }
    return {name: tables_holding(h.rt.store, v) for name, v in values.items()}


def snapshot(h: PrivacyHub) -> dict[str, Any]:
    from sqlalchemy import MetaData

    md = MetaData()
    md.reflect(h.rt.store.engine)
    with h.rt.store.connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(select(t)).all())) for t in md.sorted_tables}


@pytest.mark.parametrize("by", ["phone", "openid", "customer"])
def test_after_forget_no_table_holds_the_customer(hub: PrivacyHub, by: str) -> None:
    cid = hub.customer_of(PHONE)
    other = hub.customer_of(OTHER_PHONE)
    before = personal(hub, PHONE, OPENID, MEMBER, cid)
    # the data set reaches the tables that matter (else the scan below proves nothing)
    assert {"identities.value", "touchpoints.doc", "inbox.payload"} <= set(before["openid"])
    assert "quarantine.payload" in before["phone"]
    assert {"cases.customer_id", "survey_invitations.customer_id", "customer_scores.customer_id"} <= set(
        before["customer"]
    )
    other_before = personal(hub, OTHER_PHONE, OTHER_OPENID, OTHER_MEMBER, other)

    lookup = {
        "phone": Lookup(phone="+86 138-1234-5678"),
        "openid": Lookup(openid=OPENID, scope="wxoa"),
        "customer": Lookup(customer=cid),
    }[by]
    report = forget_in(hub.rt, lookup, actor="admin")

    assert report.customers == 1 and report.by == by
    assert personal(hub, PHONE, OPENID, MEMBER, cid) == {k: {} for k in before}
    assert personal(hub, OTHER_PHONE, OTHER_OPENID, OTHER_MEMBER, other) == other_before  # untouched
    for key in (
        "touchpoints.deleted",
        "identities.deleted",
        "customers.deleted",
        "quarantine.deleted",
        "inbox.payload_cleared",
        "cases.scrubbed",
        "survey_invitations.anonymised",
        "touchpoints.anonymised",
        "customer_scores.deleted",
        "outbox.cancelled",
    ):
        assert report.counts.get(key, 0) >= 1, key


def test_the_audit_row_has_counts_and_a_reference_and_no_personal_data(hub: PrivacyHub) -> None:
    cid = hub.customer_of(PHONE)
    report = forget_in(hub.rt, Lookup(phone=PHONE), actor="admin", via="cli")
    with hub.rt.store.connect() as conn:
        [row] = conn.execute(select(console_audit).where(console_audit.c.action == "privacy.forget")).mappings()
    assert row["actor"] == "admin" and row["target"] == report.reference and report.reference.startswith("fg-")
    assert row["detail"]["counts"] == report.as_dict()["counts"] and row["detail"]["by"] == "phone"
    text = repr(dict(row))
    for value in (PHONE, PHONE[-4:] + "'", hub.vault.hash("phone", PHONE), OPENID, MEMBER, cid):
        assert value not in text
    # an earlier audit row about the customer (a console view) keeps who and when, not whom
    with hub.rt.store.connect() as conn:
        views = conn.execute(select(console_audit).where(console_audit.c.action == "customer.view")).mappings().all()
    assert len(views) == 2 and not any(cid in repr(dict(v)) for v in views)
    assert [v["target"] for v in views].count(f"forgotten:{report.reference}") == 1


def test_stats_still_compute_and_keep_the_anonymous_score(hub: PrivacyHub) -> None:
    with hub.rt.store.connect() as conn:
        before = compute_stats(conn)[0]
    forget_in(hub.rt, Lookup(phone=PHONE), actor="admin")
    with hub.rt.store.connect() as conn:
        after = compute_stats(conn)[0]
        by_store = compute_stats(conn, by="store")
        n_cases = conn.execute(select(func.count()).select_from(cases)).scalar_one()
        closed = conn.execute(select(cases.c.status, cases.c.customer_id, cases.c.doc)).all()
        [answer] = [
            d
            for (d,) in conn.execute(select(touchpoints.c.doc).where(touchpoints.c.kind == "survey_response"))
            if d["attributes"].get("anonymised")
        ]
    assert before["nps_n"] == after["nps_n"] == 2 and after["nps"] == before["nps"]
    assert after["responded"] == before["responded"] and by_store
    assert n_cases == 2  # the case stays for the statistics...
    forgotten = [c for c in closed if c.customer_id is None]
    assert len(forgotten) == 1 and forgotten[0].status == "closed"
    assert forgotten[0].doc["summary"]["text"] == "" and forgotten[0].doc["summary"].get("store") == "S001"
    assert answer["feedback"]["nps"] == 10 and answer["feedback"]["text"] is None
    assert answer["customer"] == {"identities": [], "customer_id": None}


def test_unsent_messages_are_cancelled(hub: PrivacyHub) -> None:
    forget_in(hub.rt, Lookup(phone=PHONE), actor="admin")
    with hub.rt.store.connect() as conn:
        rows = conn.execute(select(outbox.c.status, outbox.c.last_error, outbox.c.message)).all()
    cancelled = [r for r in rows if r.last_error and "forgotten" in r.last_error]
    assert cancelled and all(
        r.status == "dead" and r.message["to"] == [] and r.message["body"] == "" for r in cancelled
    )
    assert any(r.status == "pending" for r in rows)  # the other customer's invitation is still due


def test_dry_run_changes_nothing(hub: PrivacyHub) -> None:
    before = snapshot(hub)
    report = forget_in(hub.rt, Lookup(phone=PHONE), actor="admin", dry_run=True)
    assert report.dry_run and report.counts.get("identities.deleted", 0) >= 1
    assert snapshot(hub) == before
    real = forget_in(hub.rt, Lookup(phone=PHONE), actor="admin")
    assert real.counts == report.counts  # the preview counted exactly what the forget did


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        ({"phone": "12345"}, "not a mainland mobile number"),
        ({"phone": "23812345678"}, "not a mainland mobile number"),
        ({"phone": "13700000000"}, "no customer has this phone number"),
        ({"openid": "oNOBODY"}, "no customer has this id"),
        ({"openid": OPENID, "scope": "another-app"}, "in this scope"),
        ({"customer": "no-such-customer"}, "no such customer id"),
        ({}, "exactly one of"),
        ({"phone": PHONE, "openid": OPENID}, "exactly one of"),
        ({"phone": PHONE, "scope": "wxoa"}, "openid only"),
    ],
)
def test_bad_input_is_a_clear_error(hub: PrivacyHub, lookup: dict[str, str], message: str) -> None:
    before = snapshot(hub)
    with pytest.raises(ForgetError, match=message):
        forget_in(hub.rt, Lookup(**lookup), actor="admin")
    assert snapshot(hub) == before


def test_a_merged_customer_is_forgotten_with_its_survivor(hub: PrivacyHub) -> None:
    from hub.store.schema import customers

    cid = hub.customer_of(PHONE)
    from kit.privacy import checkout

    # another customer, then a checkout that carries both of them: they merge into the older one
    first = checkout("R9", phone="13500000009", openid="oANOTHER0000001", member="MEMBER-NEW-9")
    assert hub.ingest("pos", first, key="receipt").stored == 1
    both = checkout("R10", phone="13500000009", openid="oANOTHER0000002", member=MEMBER)
    assert hub.ingest("pos", both, key="receipt").stored == 1
    with hub.rt.store.connect() as conn:
        absorbed = conn.execute(select(customers.c.id).where(customers.c.merged_into == cid)).scalars().all()
    assert len(absorbed) == 1
    forget_in(hub.rt, Lookup(customer=cid), actor="admin")
    with hub.rt.store.connect() as conn:
        assert conn.execute(select(customers.c.id).where(customers.c.merged_into == cid)).first() is None
    for value in ("13500000009", "oANOTHER0000001", "oANOTHER0000002", "MEMBER-NEW-9", cid, absorbed[0]):
        assert tables_holding(hub.rt.store, value) == {}, value


def test_a_phone_only_in_quarantined_records_is_forgotten_too(hub: PrivacyHub) -> None:
    from kit.privacy import checkout

    lost = "13300000003"
    bad = checkout("Q9", phone=lost, openid="oLOST0000000003", member="MEMBER-LOST-3", total="not a number")
    assert hub.ingest("pos", bad, key="receipt").quarantined == 1
    assert "quarantine.payload" in tables_holding(hub.rt.store, lost)
    report = forget_in(hub.rt, Lookup(phone=lost), actor="admin")
    assert report.customers == 0 and report.counts["quarantine.deleted"] == 1
    assert tables_holding(hub.rt.store, lost) == {} and tables_holding(hub.rt.store, "oLOST0000000003") == {}
    with pytest.raises(ForgetError, match="no customer has this id"):  # an openid is looked up in identities only
        forget_in(hub.rt, Lookup(openid="oLOST0000000003"), actor="admin")
    assert tables_holding(hub.rt.store, PHONE)  # nobody else's records
