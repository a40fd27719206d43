"""Features: the plug-ins that act on what the hub ingests (surveys, feedback, delivery...).

A feature is an object registered in the entry-point group ``cxhub.features``::

    [project.entry-points."cxhub.features"]
    surveys = "hub.features.surveys:feature"

The core knows no feature by name. :class:`~hub.runtime.Runtime` installs every installed feature
in the order their declared dependencies give, and each one brings, through this one protocol:

- its **config section**: ``section`` is the top-level YAML key it reads and ``config_model()`` the
  pydantic model that validates it when the config loads (errors name file:line:key). A section
  model may define ``check(cfg) -> list[ConfigError]`` for checks against the rest of the config;
- its **migrations**: ``migrations`` is a folder of Alembic revisions on the feature's own branch
  (``branch_labels = ("<name>",)``, ``down_revision`` a core revision);
- its **ingest hooks, web routes, periodic jobs and services**, added by ``install(runtime)`` to
  ``runtime.hooks``, ``runtime.routers``, ``runtime.jobs`` and ``runtime.services``;
- its **CLI commands**: ``cli`` is ``"module:function"`` in the CLI layer; the ``cxhub`` command
  calls the function with its Typer app. The feature itself never imports Typer or rich.

``install`` returns the feature's public interface, which the runtime keeps as
``runtime.features[name]``. Features talk to each other only through those interfaces: a feature
that needs another declares what it calls as a :class:`typing.Protocol` of its own and checks the
object it is given, never importing the other feature's modules.

Customers merge: when one event's identities point at two customers, identity resolution merges
them into the older one (the *survivor*; the others are *absorbed*), inside the ingest
transaction. Every row a feature keeps per customer must follow, or a merged customer escapes
caps, opt-outs, open cases... A feature says which of its rows those are:

- ``customer_columns``: ``("table", "column")`` pairs holding a customer id; the core re-keys them
  from the absorbed ids to the survivor (``UPDATE table SET column = survivor WHERE column IN
  absorbed``). Enough when the rows need no more than a new customer id;
- ``merge``: ``"module:function"`` called as ``function(conn, absorbed, survivor, now)`` after that,
  for anything else (rows that collide on a unique key, counters to add up, an audit entry);
- or override :meth:`Feature.on_merge`, which the core calls and which does the two above.

Order: ``requires`` names features that must be installed (a feature whose requirement is missing
is not installed, and ``cxhub features`` says why); ``after`` names features to install first when
they are present. Ties go alphabetically, so the order is the same in every process.

Personal data (docs/privacy.md): a feature that keeps rows about customers says how they expire
and how they are forgotten, through ``privacy``: ``"module"`` with two functions,

- ``purge(conn, now, retention) -> dict[str, int]``: one bounded batch of the rows older than their
  data class's retention (``retention.cutoff("survey_answers")``, at most ``retention.batch`` rows
  per class), deleted or anonymised; returns counts keyed ``"<class>.<table>.<action>"``. The core calls it
  again, each time in a new transaction, until it returns nothing or the run's batches are spent;
- ``forget(conn, customer_ids, now) -> dict[str, int]``: delete or anonymise every row of these
  customers (``cxhub privacy forget``), in the caller's transaction, before the core deletes their
  touchpoints, identities and customers rows; returns counts keyed ``"<table>.<action>"``;

or override :meth:`Feature.purge` and :meth:`Feature.forget`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy import Connection

GROUP = "cxhub.features"


class Feature:
    """Base class of a feature plug-in: set the class attributes, implement :meth:`install`.

    Subclasses keep their module imports light (the ``cxhub`` command loads every feature object to
    register its commands): import the feature's machinery inside :meth:`install` and
    :meth:`config_model`.
    """

    #: the feature's name: the key of ``runtime.features`` and of its entry point
    name: ClassVar[str] = ""
    #: one line for ``cxhub features``
    title: ClassVar[str] = ""
    #: the top-level config key this feature reads (None: it has no section)
    section: ClassVar[str | None] = None
    #: features that must be installed for this one to work
    requires: ClassVar[tuple[str, ...]] = ()
    #: features to install before this one when they are installed
    after: ClassVar[tuple[str, ...]] = ()
    #: "module:function" of the feature's CLI commands (the function gets the Typer app)
    cli: ClassVar[str | None] = None
    #: the feature's ("table", "column") pairs that hold a customer id: re-keyed to the survivor
    #: when customers merge (see :meth:`on_merge`)
    customer_columns: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: "module:function" called as ``function(conn, absorbed, survivor, now)`` when customers merge,
    #: after ``customer_columns`` are re-keyed (see :meth:`on_merge`)
    merge: ClassVar[str | None] = None
    #: "module" with the feature's ``purge`` and ``forget`` functions (see :meth:`purge`, :meth:`forget`)
    privacy: ClassVar[str | None] = None

    def config_model(self) -> type[BaseModel] | None:
        """The pydantic model of the feature's config section."""
        return None

    @property
    def migrations(self) -> Path | None:
        """A folder of Alembic revisions (the feature's own branch), or None."""
        return None

    def on_merge(self, conn: Connection, absorbed: Sequence[str], survivor: str, now: datetime) -> None:
        """Customers ``absorbed`` were merged into ``survivor`` (the older customer): move this
        feature's rows to the survivor, inside ``conn``'s transaction (the ingest's: a failure rolls
        the whole batch back, merge included).

        The runtime calls it on every installed feature (after the core re-keyed its own tables:
        identities, touchpoints, customers). This default re-keys ``customer_columns`` and then
        calls the ``merge`` function, if any; a feature may override it instead.
        """
        if self.customer_columns:
            from sqlalchemy import column, table
            from sqlalchemy.sql.expression import ColumnClause

            for table_name, column_name in self.customer_columns:
                col: ColumnClause[Any] = column(column_name)
                t = table(table_name, col)
                conn.execute(t.update().where(col.in_(list(absorbed))).values({column_name: survivor}))
        if self.merge:
            module, _, func = self.merge.partition(":")
            getattr(importlib.import_module(module), func)(conn, absorbed, survivor, now)

    def store_names(self, section: Any) -> dict[str, str]:
        """Store id -> the name people know it by, from this feature's validated config section
        (None when the file has none). The CLI shows ``徐汇店`` where the data says ``S001``."""
        return {}

    def org_units(self, section: Any) -> list[tuple[str, str, str, str | None]]:
        """The org hierarchy this feature's config declares, as ``(kind, id, name, parent)`` with
        kind one of hq / region / district / store (the feedback feature's ``org:``). The console
        scopes every user by it (hub/console/scope.py)."""
        return []

    def install(self, runtime: Any) -> Any:
        """Add hooks, routes, jobs and services to ``runtime`` (a :class:`hub.runtime.Runtime`, which
        this module does not import: the runtime installs features, not the other way round);
        return the public interface."""
        raise NotImplementedError

    def purge(self, conn: Connection, now: datetime, retention: Retention) -> dict[str, int]:
        """Delete or anonymise one bounded batch of this feature's rows older than their data
        class's retention, inside ``conn``'s transaction; counts keyed ``"<class>.<table>.<action>"``. The
        default calls the ``purge`` function of the ``privacy`` module, if any."""
        if not self.privacy:
            return {}
        return dict(importlib.import_module(self.privacy).purge(conn, now, retention))

    def forget(self, conn: Connection, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
        """Delete or anonymise every row of these customers (the right to be forgotten), inside
        ``conn``'s transaction; counts keyed ``"<table>.<action>"``. The default calls the ``forget`` function of
        the ``privacy`` module, if any."""
        if not self.privacy:
            return {}
        return dict(importlib.import_module(self.privacy).forget(conn, customer_ids, now))

    def __repr__(self) -> str:
        return f"<feature {self.name}>"


@dataclass(frozen=True)
class Retention:
    """What one purge batch may take: per data class, the time before which rows go (None: the
    class is kept forever), and at most ``batch`` rows per class."""

    cutoffs: Mapping[str, datetime | None]
    batch: int = 1000

    def cutoff(self, data_class: str) -> datetime | None:
        """Rows of ``data_class`` older than this go; None: kept forever."""
        return self.cutoffs.get(data_class)


@dataclass(frozen=True)
class FeatureInfo:
    """One registered feature and whether it can run here."""

    name: str
    target: str
    feature: Feature | None
    error: str | None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else f"unavailable: {self.error}"


def load_feature(name: str, target: str, load: Callable[[], Any]) -> FeatureInfo:
    """Load one entry point; a broken plug-in becomes an info with the reason, never an exception."""
    try:
        obj = load()
        if isinstance(obj, type) and issubclass(obj, Feature):
            obj = obj()
        if not isinstance(obj, Feature):
            raise TypeError(f"{target} is not a cxhub Feature (subclass hub.feature.Feature)")
        if obj.name != name:
            raise TypeError(f"{target} calls itself {obj.name!r}, but is registered as {name!r}")
        return FeatureInfo(name, target, obj, None)
    except Exception as exc:  # a broken plugin must not break the hub; it shows in the status
        return FeatureInfo(name, target, None, f"{type(exc).__name__}: {exc}")


def install_order(infos: Iterable[FeatureInfo]) -> list[FeatureInfo]:
    """Features in dependency order; those that cannot run get their reason in ``error``.

    A feature is unavailable when it failed to load, when a feature it ``requires`` is missing or
    unavailable, or when it sits on a dependency cycle.
    """
    by_name = {i.name: i for i in infos}
    changed = True
    while changed:  # a missing requirement makes its dependents unavailable too
        changed = False
        for name, info in list(by_name.items()):
            if info.feature is None:
                continue
            for req in info.feature.requires:
                dep = by_name.get(req)
                if dep is None or dep.feature is None:
                    why = "not installed" if dep is None else "unavailable"
                    by_name[name] = FeatureInfo(name, info.target, None, f"requires feature {req!r} ({why})")
                    changed = True
                    break
    ok = {n: i for n, i in by_name.items() if i.feature is not None}
    deps = {
        n: {d for d in (*i.feature.requires, *i.feature.after) if d in ok}  # type: ignore[union-attr]
        for n, i in ok.items()
    }
    ordered: list[FeatureInfo] = []
    done: set[str] = set()
    while len(done) < len(ok):
        ready = sorted(n for n in ok if n not in done and deps[n] <= done)
        if not ready:
            for n in sorted(set(ok) - done):
                cycle = ", ".join(sorted(deps[n] - done))
                by_name[n] = FeatureInfo(n, ok[n].target, None, f"dependency cycle through {cycle}")
            break
        for n in ready:
            ordered.append(ok[n])
            done.add(n)
    return ordered + [i for i in by_name.values() if i.feature is None]
