"""``cxhub privacy forget`` and ``cxhub privacy purge`` through Typer's runner, on SQLite and
PostgreSQL: what they print (counts per table, a reference; never the phone number), that a dry
run and a refused confirmation change nothing, and clear errors for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kit.privacy import OPENID, PHONE, PrivacyHub, privacy_hub, tables_holding
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from cli import app
from hub.sdk.testing import FakeClock
from hub.store import Store

runner = CliRunner()


@pytest.fixture
def filled(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, PrivacyHub]]:
    monkeypatch.delenv("CXHUB_STORE_URL", raising=False)
    monkeypatch.delenv("CXHUB_SECRET_KEY", raising=False)
    clock = FakeClock(datetime.now(UTC) - timedelta(days=10))  # the CLI runs on the real clock
    h = privacy_hub(tmp_path, store, clock, privacy={"retention": {"raw_payloads": "7d"}})
    h.fill()
    h.rt.close()
    yield tmp_path / "cxhub.yaml", h


def cx(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def snapshot(store: Store) -> dict[str, Any]:
    md = MetaData()
    md.reflect(store.engine)
    with store.connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(select(t)).all())) for t in md.sorted_tables}


def test_forget_by_phone_prints_counts_and_a_reference(filled: tuple[Path, PrivacyHub], store: Store) -> None:
    cfg, _ = filled
    r = cx("privacy", "forget", "--phone", PHONE, "--yes", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    assert "forgot 1 customer(s) found by phone" in r.output and "reference: fg-" in r.output
    assert "identities" in r.output and "touchpoints" in r.output and "quarantine" in r.output
    assert PHONE not in r.output and PHONE[-4:] not in r.output.replace("fg-", "")
    assert tables_holding(store, PHONE) == {} and tables_holding(store, OPENID) == {}


def test_dry_run_and_a_refused_confirmation_change_nothing(filled: tuple[Path, PrivacyHub], store: Store) -> None:
    cfg, _ = filled
    before = snapshot(store)
    r = cx("privacy", "forget", "--openid", OPENID, "--scope", "wxoa", "--dry-run", "--json", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    preview = json.loads(r.output)
    assert preview["dry_run"] and preview["customers"] == 1 and preview["counts"]["identities.deleted"] >= 3
    r = cx("privacy", "forget", "--openid", OPENID, "-c", str(cfg), input="n\n")
    assert r.exit_code == 1 and "would forget 1 customer(s)" in r.output and "nothing changed" in r.output
    assert snapshot(store) == before
    r = cx("privacy", "forget", "--openid", OPENID, "-c", str(cfg), input="y\n")
    assert r.exit_code == 0 and "forgot 1 customer(s) found by openid" in r.output
    assert tables_holding(store, OPENID) == {}


def test_the_phone_may_come_from_stdin(filled: tuple[Path, PrivacyHub], store: Store) -> None:
    cfg, _ = filled
    r = cx("privacy", "forget", "--phone", "-", "--yes", "--json", "-c", str(cfg), input=f"{PHONE}\n")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"]["customers.deleted"] == 1
    assert tables_holding(store, PHONE) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phone", "1234"], "not a mainland mobile number"),
        (["--phone", "13700000000"], "no customer has this phone number"),
        (["--customer", "nobody"], "no such customer id"),
        ([], "exactly one of"),
        (["--phone", PHONE, "--customer", "x"], "exactly one of"),
    ],
)
def test_bad_input_is_a_clear_error(
    filled: tuple[Path, PrivacyHub], store: Store, args: list[str], message: str
) -> None:
    cfg, _ = filled
    before = snapshot(store)
    r = cx("privacy", "forget", *args, "--yes", "-c", str(cfg))
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert snapshot(store) == before


def test_purge_dry_run_then_purge(filled: tuple[Path, PrivacyHub], store: Store) -> None:
    cfg, _ = filled
    before = snapshot(store)
    r = cx("privacy", "purge", "--dry-run", "--json", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    dry = json.loads(r.output)
    assert (
        dry["counts"] == {"raw_payloads": {"inbox.payload_cleared": 8}} and dry["retention"]["touchpoints"] == "forever"
    )
    assert snapshot(store) == before
    r = cx("privacy", "purge", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    assert "purged" in r.output and "raw_payloads" in r.output and "payload cleared" in r.output and "8" in r.output
    assert "quarantine" in r.output and "30d" in r.output
    assert tables_holding(store, PHONE) == {"quarantine.payload": 1}
    again = json.loads(cx("privacy", "purge", "--json", "-c", str(cfg)).output)
    assert again["total"] == 0
