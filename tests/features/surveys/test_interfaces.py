"""The interfaces other features rely on (the recovery survey of hub/features/feedback/recovery.py):

- ``rt.features["surveys"].config.rules`` (rules by name, including disabled ones);
- ``rt.features["surveys"].engine.consider(conn, ev, rule, now)`` inside the caller's transaction,
  returning the invitation row (``id``, ``decision``, ``reason``...) or None when the transaction
  already has one;
- ``engine.signer.verify(token, check_expiry=False).invitation_id``;
- the ``survey_invitations`` table (``id``, ``rule``, ``transaction_id``, ``status``...).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from kit.surveys import BASE_SURVEYS, checkout, ingest, invitations_of
from sqlalchemy import select

from hub.features.surveys.schema import invitations
from hub.features.surveys.tokens import TokenError
from hub.model import TouchpointEvent
from hub.store.schema import outbox, touchpoints


def _config() -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_SURVEYS)
    cfg["quiet_hours"] = None
    cfg["caps"] = [{"max": 1, "per": "7d"}]
    cfg["rules"] = [
        # never fires on touchpoints by itself: only through consider()
        {"name": "recovery", "questionnaire": "retail", "enabled": False, "delay": "1h", "expires": "2d"},
    ]
    return cfg


def test_the_recovery_survey_interfaces(make_runtime: Any, clock: Any, store: Any) -> None:
    """On SQLite and on the real PostgreSQL (where consider takes the customer's advisory lock)."""
    rt = make_runtime(_config(), store=store)
    ingest(rt, checkout("R1"))
    assert invitations_of(rt) == []  # the disabled rule did not fire
    feature = rt.features["surveys"]
    rule = {r.name: r for r in feature.config.rules}["recovery"]
    with rt.store.connect() as conn:
        ev = TouchpointEvent.model_validate(conn.execute(select(touchpoints.c.doc)).scalar_one())
    now = clock()
    ev = ev.model_copy(update={"occurred_at": now})  # as recovery.py does: the delay runs from now
    with rt.store.begin() as conn:  # the caller's transaction (a case being resolved)
        row = feature.engine.consider(conn, ev, rule, now)
        assert row is not None
        assert (row["decision"], row["reason"], row["rule"], row["transaction_id"]) == (
            "scheduled",
            None,
            "recovery",
            ev.id,
        )
        assert row["send_at"] == now + timedelta(hours=1)
        assert feature.engine.consider(conn, ev, rule, now) is None  # one invitation per transaction
    with rt.store.connect() as conn:
        inv = conn.execute(select(invitations).where(invitations.c.id == row["id"])).mappings().one()
        token = conn.execute(select(outbox.c.message)).scalar_one()["url"].rsplit("/", 1)[1]
    assert (inv["rule"], inv["transaction_id"], inv["status"]) == ("recovery", ev.id, "pending")
    # a late answer still names its invitation
    late = inv["expires_at"] + timedelta(days=30)
    assert feature.engine.signer.verify(token, check_expiry=False).invitation_id == row["id"]
    with pytest.raises(TokenError):
        feature.engine.signer.verify(token, late)
    # caps still apply to the recovery rule: a second recovery invitation within 7 days is capped
    ev2 = ev.model_copy(update={"id": "00000000-0000-0000-0000-000000000002"})
    with rt.store.begin() as conn:
        row2 = feature.engine.consider(conn, ev2, rule, now + timedelta(days=1))
    assert row2 is not None and (row2["decision"], row2["reason"]) == ("suppressed", "capped_global")
