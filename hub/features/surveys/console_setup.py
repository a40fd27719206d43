"""Registration of the surveys feature's console parts (:mod:`hub.features.surveys.console`):
import-light, so that building a runtime for a command loads no web framework; the pages, tiles and
panel load with the console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.console import NavItem, Tile

if TYPE_CHECKING:
    from hub.features.surveys import SurveysFeature
    from hub.runtime import Runtime

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "console_templates"
MESSAGES = HERE / "console_messages"
#: the overview's score tiles, in order
TILE_METRICS = ("nps", "csat", "ces")


def install_console(rt: Runtime, feature: SurveysFeature) -> None:
    """Add the survey pages and API, the menu entry, the NPS / CSAT / CES tiles, the customer page's
    panel, the templates and the messages to ``rt.console``."""

    def router(app: Any) -> Any:
        from hub.features.surveys.console import build_router

        return build_router(app, feature)

    def tile(metric: str) -> Any:
        def render(app: Any, me: Any) -> str:
            from hub.features.surveys.console import score_tile

            return score_tile(app, me, feature, metric)

        return render

    def panel(app: Any, me: Any, customer_id: str) -> str:
        from hub.features.surveys.console import customer_panel

        return customer_panel(app, me, customer_id, feature)

    console = rt.console
    console.add_templates(TEMPLATES)
    console.add_messages(MESSAGES)
    console.add_router(router)
    console.add_nav(NavItem("surveys.nav", "/surveys", "data.read", 20))
    for i, metric in enumerate(TILE_METRICS):
        console.add_tile(
            Tile(f"surveys-{metric}", f"surveys.tile.{metric}", tile(metric), "data.read", 30 + i, 300, ("surveys",))
        )
    console.add_customer_panel(panel)
