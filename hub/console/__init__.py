"""The web console at ``/console`` of ``cxhub run``: cases, surveys, connectors and customers for
staff, managers and integrators, scoped by the org hierarchy (docs/console.md).

The console is a core service that features fill, the way they fill ingest hooks and jobs. The core
brings the shell: accounts and sign-in (:mod:`hub.console.accounts`, :mod:`hub.console.auth`),
roles and scopes (:mod:`hub.console.scope`), the layout, the message catalogue
(:mod:`hub.console.i18n`), live updates (:mod:`hub.console.live`) and the pages of the core's own
data (overview, connectors, outbox, quarantine, customers, audit). A feature adds, in
``install(runtime)``, through ``runtime.console`` (a :class:`Console`):

- ``add_router(factory)``: ``factory(app)`` returns a FastAPI router of pages and API routes under
  ``/console``; ``app`` is the :class:`hub.console.app.ConsoleApp` whose ``guard(permission)``
  dependency gives the request's :class:`~hub.console.scope.Principal` (or answers 401/403) and
  whose ``render`` draws a page in the shared layout;
- ``add_nav(NavItem)``: an entry of the menu, shown to users with its permission;
- ``add_tile(Tile)``: a panel of the overview, loaded on its own (a slow tile delays no other);
- ``add_customer_panel(panel)``: a section of the customer page (the feature's rows of that
  customer, in the viewer's scope);
- ``add_templates(folder)`` and ``add_messages(folder)``: the feature's templates and catalogue
  (``<locale>.yaml`` or ``<part>.<locale>.yaml`` files).

Every route scopes its queries with the principal (``principal.clause(table.c.store)``); the test
suite walks every route of the console as a store manager of another store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: the largest row id a page's cursor (``before``) may name: a database's 64-bit integer
MAX_ROW_ID = 2**63 - 1


@dataclass(frozen=True)
class NavItem:
    """One entry of the console's menu."""

    key: str  # message key of the label (``nav.cases``)
    path: str  # under /console (``/cases``)
    permission: str = "data.read"
    order: int = 50


@dataclass(frozen=True)
class Tile:
    """One panel of the overview: ``render(app, principal)`` returns its HTML (scoped!)."""

    name: str
    title: str  # message key
    render: Callable[[Any, Any], str]
    permission: str = "data.read"
    order: int = 50
    refresh_seconds: int = 60
    #: feed topics that refresh it at once (``cases``: a case opened or changed)
    topics: tuple[str, ...] = ()


@dataclass
class Console:
    """What features add to the console (``runtime.console``)."""

    routers: list[Callable[[Any], Any]] = field(default_factory=list)
    nav: list[NavItem] = field(default_factory=list)
    tiles: list[Tile] = field(default_factory=list)
    templates: list[Path] = field(default_factory=lambda: [HERE / "templates"])
    messages: list[Path] = field(default_factory=lambda: [HERE / "messages"])
    #: sections of the customer page: ``panel(app, principal, customer_id)`` returns HTML (scoped!)
    customer_panels: list[Callable[[Any, Any, str], str]] = field(default_factory=list)

    def add_router(self, factory: Callable[[Any], Any]) -> None:
        self.routers.append(factory)

    def add_nav(self, item: NavItem) -> None:
        self.nav.append(item)

    def add_tile(self, tile: Tile) -> None:
        self.tiles.append(tile)

    def add_customer_panel(self, panel: Callable[[Any, Any, str], str]) -> None:
        self.customer_panels.append(panel)

    def add_templates(self, folder: Path) -> None:
        self.templates.append(folder)

    def add_messages(self, folder: Path) -> None:
        self.messages.append(folder)


__all__ = ["Console", "NavItem", "Tile"]
