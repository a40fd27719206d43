"""Context-aware surveys after transactions.

``install(runtime)`` (listed in ``hub.runtime.FEATURES``) adds the survey rules engine as an
ingest hook, and the hosted survey page (``GET/POST /s/{token}``) as a FastAPI router.
See docs/surveys.md.

Imports stay lazy here: ``hub.config`` imports ``hub.features.surveys.config``, which runs this file first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.features.surveys.config import SurveysConfig
    from hub.features.surveys.engine import SurveyEngine
    from hub.features.surveys.questionnaire import Questionnaire
    from hub.mapping import CompiledMapping
    from hub.runtime import Runtime


@dataclass
class SurveysFeature:
    """What ``install`` built; ``runtime.features["surveys"]``."""

    config: SurveysConfig
    questionnaires: dict[str, Questionnaire]
    engine: SurveyEngine
    page_mapping: CompiledMapping


def page_mapping() -> CompiledMapping:
    """The mapping of answers from the hosted page (preset ``mappings/survey_page.yaml``)."""
    from hub.mapping import PRESET_DIR, load_mapping_file

    return load_mapping_file(PRESET_DIR / "survey_page.yaml")


def build(rt: Runtime) -> SurveysFeature:
    """Validate the surveys section against the rest of the config and build the engine."""
    from hub.features.surveys.config import SurveysConfig
    from hub.features.surveys.engine import SurveyEngine
    from hub.features.surveys.questionnaire import load_questionnaires

    raw: Any = rt.config.raw.surveys
    cfg = raw if isinstance(raw, SurveysConfig) else SurveysConfig.model_validate(raw or {})
    lines = rt.config.lines
    for i, ch in enumerate(cfg.channels):
        if ch.destination not in rt.config.destinations:
            raise lines.error(
                ("surveys", "channels", i, "destination"),
                f"no destination {ch.destination!r} under `destinations:`; configured: {sorted(rt.config.destinations)}",
            )
    questionnaires = load_questionnaires(
        cfg.questionnaires, [r.questionnaire for r in cfg.rules], rt.config.base_dir, lines
    )
    engine = SurveyEngine(
        cfg,
        questionnaires,
        secret_key=rt.config.secret_key,
        public_url=rt.config.raw.server.public_url,
    )
    return SurveysFeature(cfg, questionnaires, engine, page_mapping())


def install(rt: Runtime) -> SurveysFeature:
    """Add the rules engine (ingest hook) and the survey page (router) to ``rt``."""
    from hub.features.surveys.web import router

    feature = build(rt)
    rt.hooks.append(feature.engine)
    rt.routers.append(router(rt, feature))
    return feature
