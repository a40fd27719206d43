"""The recovery survey: after a case is resolved, invite the customer to a short survey through the
surveys feature (``feedback.recovery_survey.survey`` names a rule of ``surveys.rules``; give it
``enabled: false`` so it never fires on ordinary touchpoints), and record whether the customer
recovered when the answer comes back (not negative by the detection rules = recovered).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Connection, select

from hub.errors import ConfigError
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.schema import case_touchpoints, cases
from hub.model import TouchpointEvent
from hub.store.schema import touchpoints

log = logging.getLogger("cxhub.feedback")


@runtime_checkable
class SurveyInvitations(Protocol):
    """What the recovery survey needs from a surveys feature (``runtime.features["surveys"]``)."""

    def rule_names(self) -> list[str]:
        """The configured survey rules."""
        ...

    def invite(self, conn: Connection, event: TouchpointEvent, rule: str, now: datetime) -> dict[str, Any] | None:
        """Consider inviting ``event``'s customer by ``rule``; the decision, or None."""
        ...

    def invitation_of(self, conn: Connection, event: TouchpointEvent) -> Any:
        """The invitation (``.id``, ``.rule``, ``.transaction_id``) a survey answer belongs to."""
        ...


class RecoverySurvey:
    """Bridges cases and the surveys feature, through its published interface."""

    def __init__(self, cfg: FeedbackConfig, surveys: Any, *, file: str | None = None):
        self.cfg = cfg
        if not isinstance(surveys, SurveyInvitations):
            raise ConfigError("recovery_survey: the surveys feature is not installed", file=file, key="feedback")
        self.surveys = surveys
        name = cfg.recovery_survey.survey
        rules = surveys.rule_names()
        if name not in rules:
            raise ConfigError(
                f"recovery_survey.survey: no survey rule {name!r}; rules: {sorted(rules)}", file=file, key="feedback"
            )
        self.rule = name

    def invite(self, conn: Connection, case: dict[str, Any], now: datetime) -> dict[str, Any] | None:
        """Write the recovery invitation (and its outbox message) in the resolve transaction."""
        doc = conn.execute(select(touchpoints.c.doc).where(touchpoints.c.id == case["touchpoint_id"])).scalar()
        if doc is None:
            return None
        # the delay runs from the resolution, not from the original review
        ev = TouchpointEvent.model_validate(doc).model_copy(update={"occurred_at": now})
        return self.surveys.invite(conn, ev, self.rule, now)

    def case_of_response(self, conn: Connection, ev: TouchpointEvent) -> int | None:
        """The case whose recovery invitation ``ev`` answers, if any."""
        inv = self.surveys.invitation_of(conn, ev)
        if inv is None or inv.rule != self.rule:
            return None
        q = (
            select(cases.c.id)
            .select_from(case_touchpoints.join(cases, cases.c.id == case_touchpoints.c.case_id))
            .where(case_touchpoints.c.touchpoint_id == inv.transaction_id)
        )
        found = conn.execute(q).scalar()
        return None if found is None else int(found)
