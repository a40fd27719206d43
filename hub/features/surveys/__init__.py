"""Context-aware surveys after transactions (the ``surveys:`` section; see docs/surveys.md).

The feature adds the survey rules engine as an ingest hook, the hosted survey page
(``GET/POST /s/{token}``) as a FastAPI router, and its console pages (funnel, scores, answers under
``/console/surveys``; :mod:`hub.features.surveys.console`). Its public interface, ``runtime.features["surveys"]``,
is :class:`SurveysFeature`: other features invite a customer by a named rule through it
(:meth:`SurveysFeature.invite`) and find which invitation an answer belongs to
(:meth:`SurveysFeature.invitation_of`).

This module stays import-light: the ``cxhub`` command loads the feature object on every start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.feature import Feature

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy import Connection

    from hub.features.surveys.config import SurveysConfig
    from hub.features.surveys.engine import SurveyEngine
    from hub.features.surveys.questionnaire import Questionnaire
    from hub.features.surveys.sending import SurveySendCheck
    from hub.mapping import CompiledMapping
    from hub.model import TouchpointEvent
    from hub.runtime import Runtime


@dataclass(frozen=True)
class InvitationRef:
    """Which invitation a survey answer belongs to: its id, its rule and the touchpoint it followed."""

    id: str
    rule: str
    transaction_id: str


@dataclass
class SurveysFeature:
    """What ``install`` built; ``runtime.features["surveys"]``."""

    config: SurveysConfig
    questionnaires: dict[str, Questionnaire]
    engine: SurveyEngine
    page_mapping: CompiledMapping
    #: looks at each survey message again right before it is sent (``hub.outbox.checks``; the
    #: delivery feature calls it): expired, opted out, quiet hours; falls back when one dies
    send_check: SurveySendCheck

    def rule_names(self) -> list[str]:
        """The names of the configured survey rules."""
        return [r.name for r in self.config.rules]

    def invite(self, conn: Connection, event: TouchpointEvent, rule: str, now: datetime) -> dict[str, Any] | None:
        """Consider inviting ``event``'s customer by rule ``rule`` in the caller's transaction, with
        every check a rule applies (caps, opt-outs, quiet hours...). Returns the decision
        (``id``, ``decision``, ``reason``), or None when the event does not qualify."""
        by_name = {r.name: r for r in self.config.rules}
        if rule not in by_name:
            raise KeyError(f"no survey rule {rule!r}; rules: {sorted(by_name)}")
        row = self.engine.consider(conn, event, by_name[rule], now)
        return None if row is None else {"id": row["id"], "decision": row["decision"], "reason": row["reason"]}

    def invitation_of(self, conn: Connection, event: TouchpointEvent) -> InvitationRef | None:
        """The invitation a ``survey_response`` event answers (by its invitation id or signed token)."""
        from sqlalchemy import select

        from hub.features.surveys.schema import invitations
        from hub.features.surveys.tokens import TokenError

        inv = event.attributes.get("invitation_id")
        token = event.attributes.get("survey_token")
        if not inv and isinstance(token, str):
            try:
                inv = self.engine.signer.verify(token, check_expiry=False).invitation_id
            except TokenError:
                return None
        if not isinstance(inv, str) or not inv:
            return None
        row = conn.execute(
            select(invitations.c.id, invitations.c.rule, invitations.c.transaction_id).where(invitations.c.id == inv)
        ).first()
        return None if row is None else InvitationRef(row.id, row.rule, row.transaction_id)


def page_mapping() -> CompiledMapping:
    """The mapping of answers from the hosted page (preset ``mappings/survey_page.yaml``)."""
    from hub.mapping import PRESET_DIR, load_mapping_file

    return load_mapping_file(PRESET_DIR / "survey_page.yaml")


def build(rt: Runtime) -> SurveysFeature:
    """Build the engine from the surveys section (checked against the rest of the config when it loaded)."""
    from hub.features.surveys.config import SurveysConfig
    from hub.features.surveys.engine import SurveyEngine
    from hub.features.surveys.questionnaire import load_questionnaires
    from hub.features.surveys.sending import SurveySendCheck

    cfg = rt.config.section("surveys") or SurveysConfig()
    questionnaires = load_questionnaires(
        cfg.questionnaires, [r.questionnaire for r in cfg.rules], rt.config.base_dir, rt.config.lines
    )
    engine = SurveyEngine(
        cfg,
        questionnaires,
        secret_key=rt.config.secret_key,
        public_url=rt.config.raw.server.public_url,
    )
    return SurveysFeature(cfg, questionnaires, engine, page_mapping(), SurveySendCheck(engine))


class Surveys(Feature):
    """The surveys plug-in: rules engine (ingest hook), survey page (routes), its tables."""

    name = "surveys"
    title = "context-aware surveys after transactions, the hosted survey page"
    section = "surveys"
    cli = "commands.surveys:register"
    merge = "hub.features.surveys.merge:on_merge"  # customers merge: their history follows
    privacy = "hub.features.surveys.privacy"  # retention and forgetting of its rows

    def store_names(self, section: Any) -> dict[str, str]:
        return {sid: st.name for sid, st in (section.stores if section else {}).items() if st.name}

    def config_model(self) -> type[BaseModel]:
        from hub.features.surveys.config import SurveysConfig

        return SurveysConfig

    @property
    def migrations(self) -> Path:
        return Path(__file__).resolve().parent / "migrations"

    def install(self, runtime: Runtime) -> SurveysFeature:
        """Add the rules engine (ingest hook) and the survey page (router) to ``runtime``."""
        feature = build(runtime)
        runtime.hooks.append(feature.engine)

        def survey_page() -> Any:
            from hub.features.surveys.web import router

            return router(runtime, feature)

        runtime.routers.append(survey_page)
        from hub.features.surveys.console_setup import install_console

        install_console(runtime, feature)  # the console's survey pages, tiles and customer panel
        return feature


feature = Surveys()


def install(runtime: Runtime) -> SurveysFeature:
    """Install the feature on ``runtime`` by hand (tests and tools that build a runtime piecemeal)."""
    return feature.install(runtime)
