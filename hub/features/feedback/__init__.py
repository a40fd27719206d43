"""Negative feedback to staff: detection, cases, routing, SLA and escalation, one-tap actions
(the ``feedback:`` section; see docs/feedback.md).

The feature adds the case service as an ingest hook, the SLA sweep as a periodic job and the
staff-action routes. Its public interface, ``runtime.features["feedback"]``, is the
:class:`~hub.features.feedback.cases.CaseService`. With ``recovery_survey`` on, it invites the
customer through the surveys feature's interface (installed first when present).

This module stays import-light: the ``cxhub`` command loads the feature object on every start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.feature import Feature

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hub.runtime import Runtime


class Feedback(Feature):
    """The feedback plug-in: cases from negative touchpoints, routed to staff with an SLA."""

    name = "feedback"
    title = "negative feedback to staff: cases, routing, SLA, escalation, one-tap actions"
    section = "feedback"
    after = ("surveys",)
    cli = "commands.feedback:register"
    merge = "hub.features.feedback.merge:on_merge"  # customers merge: their history follows
    privacy = "hub.features.feedback.privacy"  # retention and forgetting of its rows

    def store_names(self, section: Any) -> dict[str, str]:
        return {sid: node.name for sid, node in (section.org.stores if section else {}).items() if node.name}

    def org_units(self, section: Any) -> list[tuple[str, str, str, str | None]]:
        if section is None:
            return []
        org = section.org
        units: list[tuple[str, str, str, str | None]] = [("hq", "hq", org.hq.name if org.hq else "", None)]
        units += [("region", rid, n.name or "", None) for rid, n in org.regions.items()]
        units += [("district", did, n.name or "", n.parent) for did, n in org.districts.items()]
        units += [("store", sid, n.name or "", n.parent) for sid, n in org.stores.items()]
        return units

    def config_model(self) -> type[BaseModel]:
        from hub.features.feedback.config import FeedbackConfig

        return FeedbackConfig

    @property
    def migrations(self) -> Path:
        return Path(__file__).resolve().parent / "migrations"

    def install(self, runtime: Runtime) -> Any:
        """Add the ingest hook, the SLA sweep job and the staff-action routes to ``runtime``."""
        from hub.features.feedback.feature import install as _install

        return _install(runtime)


feature = Feedback()


def install(runtime: Runtime) -> Any:
    """Install the feature on ``runtime`` by hand (tests and tools that build a runtime piecemeal)."""
    return feature.install(runtime)
