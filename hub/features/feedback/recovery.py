"""The recovery survey: after a case is resolved, invite the customer to a short survey through the
surveys feature (``feedback.recovery_survey.survey`` names a rule of ``surveys.rules``; give it
``enabled: false`` so it never fires on ordinary touchpoints), and record whether the customer
recovered when the answer comes back (not negative by the detection rules = recovered).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from hub.errors import ConfigError
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.schema import case_touchpoints, cases
from hub.model import TouchpointEvent
from hub.store.schema import touchpoints

log = logging.getLogger("cxhub.feedback")


class RecoverySurvey:
    """Bridges cases and the surveys feature (``runtime.features["surveys"]``)."""

    def __init__(self, cfg: FeedbackConfig, surveys: Any, *, file: str | None = None):
        self.cfg = cfg
        self.surveys = surveys
        name = cfg.recovery_survey.survey
        rules = {r.name: r for r in surveys.config.rules} if surveys is not None else {}
        if surveys is None:
            raise ConfigError("recovery_survey: the surveys feature is not installed", file=file, key="feedback")
        if name not in rules:
            raise ConfigError(
                f"recovery_survey.survey: no survey rule {name!r}; rules: {sorted(rules)}", file=file, key="feedback"
            )
        self.rule = rules[name]

    def invite(self, conn: Connection, case: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """Write the recovery invitation (and its outbox message) in the resolve transaction."""
        doc = conn.execute(select(touchpoints.c.doc).where(touchpoints.c.id == case["touchpoint_id"])).scalar()
        if doc is None:
            return None
        # the delay runs from the resolution, not from the original review
        ev = TouchpointEvent.model_validate(doc).model_copy(update={"occurred_at": now})
        row = self.surveys.engine.consider(conn, ev, self.rule, now)
        return None if row is None else {"decision": row["decision"], "reason": row["reason"], "id": row["id"]}

    def case_of_response(self, conn: Connection, ev: TouchpointEvent) -> int | None:
        """The case whose recovery invitation ``ev`` answers, if any."""
        from hub.features.surveys.schema import invitations
        from hub.features.surveys.tokens import TokenError

        inv = ev.attributes.get("invitation_id")
        token = ev.attributes.get("survey_token")
        if not inv and isinstance(token, str):
            try:
                inv = self.surveys.engine.signer.verify(token, check_expiry=False).invitation_id
            except TokenError:
                return None
        if not isinstance(inv, str) or not inv:
            return None
        q = (
            select(cases.c.id)
            .select_from(
                invitations.join(
                    case_touchpoints, case_touchpoints.c.touchpoint_id == invitations.c.transaction_id
                ).join(cases, cases.c.id == case_touchpoints.c.case_id)
            )
            .where(invitations.c.id == inv, invitations.c.rule == self.rule.name)
        )
        found = conn.execute(q).scalar()
        return None if found is None else int(found)
