"""Action rules: act on a score when a valuable customer's risk crosses a threshold after a negative
experience (``customers.actions``).

- ``do: win_back_case`` opens a case for the customer's store through the feedback feature's case
  API (its routing, SLA and escalation apply, as to any case);
- ``do: survey`` invites the customer by a survey rule through the surveys feature's engine: the
  same frequency caps, opt-outs, quiet hours and "why not sent" reasons as any invitation.

Each action is about a *risk alert*: a touchpoint of kind ``other`` from source ``customers``
(external id ``risk:RULE:CUSTOMER:PERIOD``) stored with the customer's identities and store, so a
case or an invitation points at something a person can open. One action per customer, rule and
``cooldown``; every decision (opened, scheduled, suppressed with its reason, skipped) is a
``customer_actions`` row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Connection, select

from hub.errors import ConfigError
from hub.features.customers.config import ActionRule, CustomersConfig
from hub.features.customers.schema import customer_actions
from hub.features.customers.scoring import CustomerFacts
from hub.model import Customer, EventKind, Org, TouchpointEvent
from hub.store import insert_ignore
from hub.store.schema import touchpoints

log = logging.getLogger("cxhub.customers")

SOURCE = "customers"


@runtime_checkable
class CaseOpener(Protocol):
    """What a win-back action needs from the feedback feature (``runtime.features["feedback"]``)."""

    def open_case(
        self, conn: Connection, ev: TouchpointEvent, *, severity: str, reasons: Sequence[str], now: datetime
    ) -> int:
        """Open a case for ``ev`` (or join the customer's open case at that store); its id."""
        ...


@runtime_checkable
class SurveyInviter(Protocol):
    """What a survey action needs from the surveys feature (``runtime.features["surveys"]``)."""

    def rule_names(self) -> list[str]: ...

    def invite(self, conn: Connection, event: TouchpointEvent, rule: str, now: datetime) -> dict[str, Any] | None: ...


class ActionRules:
    """Applies ``customers.actions`` to each scored batch, in the batch's transaction."""

    def __init__(self, cfg: CustomersConfig, *, cases: Any = None, surveys: Any = None, file: str | None = None):
        self.rules = [r for r in cfg.actions if r.enabled]
        self.cases: CaseOpener | None = cases if isinstance(cases, CaseOpener) else None
        self.surveys: SurveyInviter | None = surveys if isinstance(surveys, SurveyInviter) else None
        for i, rule in enumerate(self.rules):
            if rule.do == "win_back_case" and self.cases is None:
                raise ConfigError(
                    f"action {rule.name!r}: win_back_case needs the feedback feature (not installed or turned off)",
                    file=file,
                    key=f"customers.actions[{i}].do",
                )
            if rule.do == "survey":
                if self.surveys is None:
                    raise ConfigError(
                        f"action {rule.name!r}: a survey needs the surveys feature (not installed)",
                        file=file,
                        key=f"customers.actions[{i}].do",
                    )
                if rule.survey not in self.surveys.rule_names():
                    raise ConfigError(
                        f"action {rule.name!r}: no survey rule {rule.survey!r}; rules: {sorted(self.surveys.rule_names())}",
                        file=file,
                        key=f"customers.actions[{i}].survey",
                    )

    def __bool__(self) -> bool:
        return bool(self.rules)

    def due(
        self, rule: ActionRule, f: CustomerFacts, row: dict[str, Any], previous: float | None, now: datetime
    ) -> bool:
        """Risk crossed the threshold since the last scoring, value high enough, a recent negative experience."""
        crossed = row["risk"] >= rule.min_risk and (previous is None or previous < rule.min_risk)
        recent = f.last_negative_at is not None and f.last_negative_at >= now - timedelta(seconds=rule.negative_within)
        return crossed and row["spend"] >= rule.min_value and recent

    def apply(
        self,
        conn: Connection,
        batch: Sequence[CustomerFacts],
        rows: Sequence[dict[str, Any]],
        previous: dict[str, float],
        now: datetime,
    ) -> Iterator[str]:
        """Act on the batch; yields each decision (for the run's report)."""
        if not self.rules:
            return
        for f, row in zip(batch, rows, strict=True):
            for rule in self.rules:
                if self.due(rule, f, row, previous.get(f.customer_id), now):
                    yield self.act(conn, rule, f, row, now)

    def _event(
        self, conn: Connection, rule: ActionRule, f: CustomerFacts, row: dict[str, Any], key: str, now: datetime
    ) -> TouchpointEvent:
        """The risk alert touchpoint: the customer's identities and store from their latest touchpoint."""
        latest = conn.execute(
            select(touchpoints.c.doc)
            .where(touchpoints.c.customer_id == f.customer_id, touchpoints.c.source != SOURCE)
            .order_by(touchpoints.c.occurred_at.desc())
            .limit(1)
        ).scalar()
        doc = latest if isinstance(latest, dict) or latest is None else json.loads(latest)
        customer = Customer.model_validate((doc or {}).get("customer") or {})
        customer.customer_id = f.customer_id
        org = Org.model_validate((doc or {}).get("org") or {})
        if f.store:
            org.store = f.store
        reasons = [r["text"] for r in row["reasons"]]
        ev = TouchpointEvent(
            source=SOURCE,
            external_id=key,
            kind=EventKind.other,
            channel="cxhub",
            occurred_at=now,
            received_at=now,
            customer=customer,
            org=org,
            attributes={"rule": rule.name, "risk": row["risk"], "value": row["spend"], "reasons": reasons},
        )
        conn.execute(
            insert_ignore(conn, touchpoints, ["id"]),
            {
                "id": ev.id,
                "source": ev.source,
                "external_id": ev.external_id,
                "kind": ev.kind.value,
                "channel": ev.channel,
                "occurred_at": now,
                "received_at": now,
                "customer_id": f.customer_id,
                "store": org.store,
                "doc": ev.model_dump(mode="json"),
            },
        )
        return ev

    def act(self, conn: Connection, rule: ActionRule, f: CustomerFacts, row: dict[str, Any], now: datetime) -> str:
        period = int(now.timestamp() // rule.cooldown)
        key = f"risk:{rule.name}:{f.customer_id}:{period}"
        since = now - timedelta(seconds=rule.cooldown)
        done = conn.execute(
            select(customer_actions.c.id).where(
                customer_actions.c.rule == rule.name,
                customer_actions.c.customer_id == f.customer_id,
                customer_actions.c.at > since,
            )
        ).first()
        if done is not None:
            return "skipped"
        ev = self._event(conn, rule, f, row, key, now)
        reasons = [f"churn risk {row['risk']:.0%}"] + [r["text"] for r in row["reasons"]]
        decision, reason, ref = "skipped", None, None
        if rule.do == "win_back_case":
            assert self.cases is not None
            case_id = self.cases.open_case(conn, ev, severity=rule.severity, reasons=reasons, now=now)
            decision, ref = "case", str(case_id)
        else:
            assert self.surveys is not None and rule.survey is not None
            got = self.surveys.invite(conn, ev, rule.survey, now)
            if got is None:
                decision, reason = "skipped", "the survey rule does not apply to this customer"
            else:
                decision, reason, ref = str(got["decision"]), got.get("reason"), str(got["id"])
        conn.execute(
            insert_ignore(conn, customer_actions, ["key"]),
            {
                "key": key,
                "rule": rule.name,
                "customer_id": f.customer_id,
                "at": now,
                "action": rule.do,
                "decision": decision,
                "reason": reason,
                "ref": ref,
                "risk": row["risk"],
                "detail": {"touchpoint_id": ev.id, "reasons": reasons},
            },
        )
        log.info(
            "customer action %s: %s -> %s%s", rule.name, f.customer_id[:8], decision, f" ({reason})" if reason else ""
        )
        return decision
