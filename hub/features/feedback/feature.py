"""Wiring of the feedback feature into a :class:`~hub.runtime.Runtime`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.features.feedback.cases import CaseService
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.console_setup import install_console
from hub.features.feedback.detection import Detector
from hub.features.feedback.links import LinkSigner
from hub.features.feedback.recovery import RecoverySurvey
from hub.features.feedback.sentiment import SentimentAnalyzer, load_analyzer
from hub.features.feedback.versions import model_folder

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("cxhub.feedback")


def feedback_config(rt: Runtime) -> FeedbackConfig:
    """The runtime's ``feedback`` section (defaults when the config has none)."""
    cfg = rt.config.section("feedback")
    return cfg if isinstance(cfg, FeedbackConfig) else FeedbackConfig()


def _config_dir(rt: Runtime) -> Path | None:
    return rt.config.base_dir if rt.config.file else None


def _analyzer(cfg: FeedbackConfig, config_dir: Path | None) -> SentimentAnalyzer:
    """The configured sentiment engine; ``model`` loads the promoted version of ``model_dir``."""
    engine = cfg.sentiment.engine if cfg.enabled else "none"
    folder = model_folder(cfg.sentiment.model_dir, config_dir) if engine == "model" else None
    return load_analyzer(engine, folder)


def _recovery(rt: Runtime, cfg: FeedbackConfig) -> RecoverySurvey | None:
    if not cfg.recovery_survey.enabled:
        return None
    return RecoverySurvey(cfg, rt.features.get("surveys"), file=rt.config.file)


def install(rt: Runtime) -> CaseService:
    """Build the case service and register its hook, sweep job and routes."""
    from hub.runtime import PeriodicJob

    def build_web_router(service: CaseService, timezone: str) -> Any:
        from hub.features.feedback.web import build_router

        return build_router(service, timezone)

    cfg = feedback_config(rt)
    config_dir = _config_dir(rt)
    analyzer = _analyzer(cfg, config_dir)
    signer = LinkSigner(rt.config.secret_key, rt.config.raw.server.public_url)
    service = CaseService(
        cfg,
        rt.store,
        Detector(cfg, analyzer, config_dir=config_dir),
        signer,
        clock=rt.clock,
        destinations=list(rt.config.destinations),
        recovery=_recovery(rt, cfg),
    )
    rt.hooks.append(service)

    def sweep() -> None:
        try:
            n = service.sweep()
            if n:
                log.info("case sweep: %d step(s)", n)
        except Exception:
            log.exception("case sweep failed; it runs again in %ss", cfg.sweep_every)

    if cfg.enabled:
        rt.jobs.append(PeriodicJob("case-sweep", cfg.sweep_every, sweep, leader_only=True))
    rt.routers.append(lambda: build_web_router(service, cfg.timezone))
    install_console(rt, service)  # the case board and pages of the web console
    if callable(getattr(analyzer, "warm", None)):
        rt.services.append(_Warm(analyzer))
    return service


class _Warm:
    """Loads the sentiment model when ``cxhub run`` starts, in the background: the server answers
    meanwhile (snownlp takes seconds to load), and a review that needs the model waits for it."""

    def __init__(self, analyzer: Any) -> None:
        self.analyzer = analyzer

    def start(self) -> None:
        import threading

        def warm() -> None:
            try:
                self.analyzer.warm()
            except Exception:  # the first review that needs it reports the same error
                log.exception("could not load the sentiment model %s", getattr(self.analyzer, "name", "?"))

        threading.Thread(target=warm, name="sentiment-warm", daemon=True).start()

    def stop(self) -> None:
        return None
