"""The customer view: scoping by the org hierarchy, masking, the CLI and the JSON API, and the
win-back action through the feedback feature's case API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from hub.features.customers.access import CustomerNotFound, Scope
from hub.sdk.testing import FakeClock

from .conftest import feed, tx
from .test_scoring import NOW, cid_of, regulars

TOKEN_EAST = "east-token-0123456789"
TOKEN_STORE3 = "store3-token-0123456789"


@pytest.fixture
def hub(make_hub: Any, clock: FakeClock) -> Any:
    clock.set(NOW)
    rt = make_hub(
        customers={
            "min_purchases": 2,
            "api_keys": {
                "east": {"token": TOKEN_EAST, "scope": "region:east"},
                "s3": {"token": TOKEN_STORE3, "scope": "store:S003"},
            },
            "actions": [
                {"name": "win_back", "min_risk": 0.5, "min_value": 100, "negative_within": "30d", "do": "win_back_case"}
            ],
        }
    )
    feed(
        rt,
        *regulars(),
        tx("a1", "2026-06-01T10:00:00+08:00", "ALICE", total="300.00", store="S001", phone="13812345678"),
        tx("a2", "2026-07-01T10:00:00+08:00", "ALICE", total="200.00", store="S002"),
        {
            "id": "a3",
            "kind": "survey_response",
            "at": "2026-07-05T10:00:00+08:00",
            "member": "ALICE",
            "store": "S001",
            "nps": 9,
        },
        {
            "id": "a4",
            "kind": "survey_response",
            "at": "2026-11-20T10:00:00+08:00",
            "member": "ALICE",
            "store": "S001",
            "nps": 2,
            "text": "收银员态度很差，电话13812345678",
            "topics": ["服务"],
        },
        tx("b1", "2026-11-01T10:00:00+08:00", "BOB", store="S003"),
    )
    return rt


def test_scopes_see_their_part_of_the_org(hub: Any) -> None:
    svc = hub.features["customers"]
    alice, bob = cid_of(hub, "ALICE"), cid_of(hub, "BOB")
    full = svc.profile(alice, Scope.parse("hq"))
    assert full["frequency"] == 2 and full["spend"] == "500.00"
    assert [s["store"] for s in full["stores"]] == ["S001", "S002"] and full["stores"][0]["region"] == "east"
    assert full["nps"]["trend"] == "worsening" and full["topics"] == {"服务": 1}
    district = svc.profile(alice, Scope.parse("district:hz"))  # S002 only
    assert district["spend"] == "200.00" and [s["store"] for s in district["stores"]] == ["S002"]
    assert svc.profile(alice, Scope.parse("region:east"))["spend"] == "500.00"
    for scope in ("region:north", "store:S003", "district:nowhere"):
        with pytest.raises(CustomerNotFound):
            svc.profile(alice, Scope.parse(scope))
    assert svc.profile(bob, Scope.parse("region:north"))["frequency"] == 1


def test_personal_data_is_masked_unless_revealed(hub: Any) -> None:
    svc = hub.features["customers"]
    alice = svc.find(phone="+86 138-1234-5678")
    assert alice == cid_of(hub, "ALICE")
    shown = str(svc.profile(alice))
    assert "13812345678" not in shown and "138****5678" in shown
    phone = next(i for i in svc.profile(alice)["identities"] if i["namespace"] == "phone")
    assert phone["value"] != "13812345678"


def test_score_acts_and_at_risk_lists_by_store(hub: Any) -> None:
    svc = hub.features["customers"]
    report = svc.score()
    alice = cid_of(hub, "ALICE")
    score = svc.profile(alice)["score"]
    assert score["risk"] >= 0.5 and any(r["signal"] == "detractor" for r in score["reasons"])
    # the detractor answer opened a feedback case; the win-back action joined it or opened one
    assert report.actions.get("case", 0) >= 1
    actions = svc.profile(alice)["actions"]
    assert actions[0]["rule"] == "win_back" and actions[0]["decision"] == "case" and actions[0]["ref"]
    # once per cooldown: a second run does nothing more
    assert svc.score().actions.get("case", 0) == 0
    east = svc.at_risk(Scope.parse("region:east"), min_risk=0.0)
    assert {s["store"] for s in east["stores"]} <= {"S001", "S002"}
    north = svc.at_risk(Scope.parse("region:north"), min_risk=0.0)
    assert [s["store"] for s in north["stores"]] == ["S003"]


def test_cli_show_and_stats_at_risk(hub: Any, tmp_path: Any) -> None:
    from cli import app

    hub.features["customers"].score()
    runner = CliRunner()
    cfg = str(tmp_path / "cxhub.yaml")
    alice = cid_of(hub, "ALICE")
    out = runner.invoke(app, ["customers", "show", alice, "-c", cfg])
    assert out.exit_code == 0, out.output
    assert "churn risk" in out.output and "13812345678" not in out.output and "NPS: 9 2 (worsening)" in out.output
    out = runner.invoke(app, ["customers", "show", "--phone", "13900000000", "-c", cfg])
    assert out.exit_code == 1 and "no customer with phone" in out.output and "13900000000" not in out.output
    out = runner.invoke(app, ["customers", "show", alice, "--scope", "region:north", "-c", cfg])
    assert out.exit_code == 1 and "scope region:north" in out.output
    out = runner.invoke(app, ["stats", "--at-risk", "--scope", "region:east", "-c", cfg])
    assert out.exit_code == 0, out.output
    assert "value at risk" in out.output and "S001" in out.output and "S003" not in out.output


def test_json_api_needs_a_key_and_keeps_to_its_scope(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.web import create_app

    monkeypatch.setenv("CXHUB_OPERATOR_TOKEN", "operator-token-0123456789")
    hub.features["customers"].score()
    alice = cid_of(hub, "ALICE")
    with TestClient(create_app(hub)) as client:
        assert client.get(
            f"/api/customers/{alice}", headers={"Authorization": "Bearer wrong-token-000000000"}
        ).status_code in (401, 403)
        assert client.get("/api/customers/at-risk").status_code == 401
        op = {"Authorization": "Bearer operator-token-0123456789"}
        assert client.get(f"/api/customers/{alice}", headers=op).json()["scope"] == "hq"
        east = {"Authorization": f"Bearer {TOKEN_EAST}"}
        got = client.get(f"/api/customers/{alice}", headers=east)
        assert got.status_code == 200 and got.json()["scope"] == "region:east"
        assert "13812345678" not in got.text
        assert (
            client.get(f"/api/customers/{alice}", headers={"Authorization": f"Bearer {TOKEN_STORE3}"}).status_code
            == 404
        )
        risk = client.get(
            "/api/customers/at-risk?min_risk=0", headers={"Authorization": f"Bearer {TOKEN_STORE3}"}
        ).json()
        assert [s["store"] for s in risk["stores"]] == ["S003"]
        assert client.get("/api/customers/lookup?phone=13812345678", headers=east).json()["customer_id"] == alice


def test_a_survey_action_needs_a_survey_rule(make_hub: Any) -> None:
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match="no survey rule 'recovery'"):
        make_hub(customers={"actions": [{"name": "s", "min_risk": 0.5, "do": "survey", "survey": "recovery"}]})


def test_merged_customers_keep_their_actions_and_drop_the_absorbed_score(hub: Any) -> None:
    from hub.features.customers.schema import customer_actions, customer_scores

    svc = hub.features["customers"]
    svc.score()
    alice, bob = cid_of(hub, "ALICE"), cid_of(hub, "BOB")
    # one event with both identities merges the two customers (the older survives)
    feed(hub, tx("link", "2026-11-25T10:00:00+08:00", "ALICE", store="S001", openid="o-bob"))
    feed(hub, {**tx("link2", "2026-11-26T10:00:00+08:00", "BOB", store="S003"), "openid": "o-bob"})
    with hub.store.connect() as conn:
        ids = set(conn.execute(select(customer_scores.c.customer_id)).scalars())
        owners = set(conn.execute(select(customer_actions.c.customer_id)).scalars())
    assert not ({alice, bob} <= ids)  # the absorbed one's score is gone
    assert owners <= ids | {alice, bob}
    _ = datetime.now(UTC)


def test_cli_score_and_at_risk(hub: Any, tmp_path: Any) -> None:
    import json

    from cli import app

    runner = CliRunner()
    cfg = str(tmp_path / "cxhub.yaml")
    out = runner.invoke(app, ["customers", "score", "-c", cfg])
    assert out.exit_code == 0, out.output
    assert "model: BG/NBD" in out.output and "scored 32 customers" in out.output
    out = runner.invoke(app, ["customers", "at-risk", "--min-risk", "0", "--json", "-c", cfg])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["scope"] == "hq" and sum(s["customers"] for s in data["stores"]) == 32
    out = runner.invoke(app, ["customers", "at-risk", "--scope", "nowhere", "-c", cfg])
    assert out.exit_code == 2 and "hq, region:ID" in out.output
