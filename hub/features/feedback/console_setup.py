"""Registration of the feedback feature's console parts (:mod:`hub.features.feedback.console`):
import-light, so that building a runtime for a command loads no web framework; the pages, tiles and
panel load with the console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.console import NavItem, Tile

if TYPE_CHECKING:
    from hub.features.feedback.cases import CaseService
    from hub.runtime import Runtime

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "console_templates"
MESSAGES = HERE / "console_messages"


def install_console(rt: Runtime, service: CaseService) -> None:
    """Add the case pages, the menu entry, two overview tiles, the customer page's panel, the
    templates and the messages to ``rt.console``."""

    def router(app: Any) -> Any:
        from hub.features.feedback.console import build_router

        return build_router(app, service)

    def sla(app: Any, me: Any) -> str:
        from hub.features.feedback.console import sla_tile

        return sla_tile(app, me, service)

    def topics(app: Any, me: Any) -> str:
        from hub.features.feedback.console import topics_tile

        return topics_tile(app, me, service)

    def panel(app: Any, me: Any, customer_id: str) -> str:
        from hub.features.feedback.console import customer_panel

        return customer_panel(app, me, customer_id, service)

    console = rt.console
    console.add_templates(TEMPLATES)
    console.add_messages(MESSAGES)
    console.add_router(router)
    console.add_nav(NavItem("feedback.nav", "/cases", "data.read", 10))
    console.add_tile(Tile("feedback-sla", "feedback.tile.sla", sla, "data.read", 10, 60, topics=("cases",)))
    console.add_tile(Tile("feedback-topics", "feedback.tile.topics", topics, "data.read", 20, 300, topics=("cases",)))
    console.add_customer_panel(panel)
