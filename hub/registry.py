"""Plug-in registries: connectors (entry-point group ``cxhub.connectors``) and features
(``cxhub.features``), found by entry points, never by scanning folders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from hub.feature import GROUP as FEATURE_GROUP
from hub.feature import FeatureInfo, install_order, load_feature

if TYPE_CHECKING:
    from hub.sdk.connector import Connector

GROUP = "cxhub.connectors"  # hub.sdk.connector.CONNECTOR_GROUP, without loading the SDK here


@dataclass(frozen=True)
class ConnectorInfo:
    """One registered connector and whether it can run here."""

    name: str
    target: str
    cls: type[Connector] | None
    error: str | None

    @property
    def status(self) -> str:
        if self.cls is None:
            return f"unavailable: {self.error}"
        missing = self.cls.missing_requirements()
        if missing:
            return f"unavailable: missing {', '.join(missing)} (pip install it)"
        return "ok"

    @property
    def roles(self) -> list[str]:
        return self.cls.roles() if self.cls else []


@cache
def _group(group: str) -> tuple[EntryPoint, ...]:
    # one scan of the installed distributions' metadata serves every lookup (each scan costs ~10 ms)
    return tuple(_all_entry_points().select(group=group))


@cache
def _all_entry_points() -> Any:
    # every group at once: a SelectableGroups on Python 3.11, EntryPoints from 3.12; both select()
    return entry_points()


def _load(ep: EntryPoint) -> ConnectorInfo:
    from hub.sdk.connector import load_connector  # here: listing features must not load pydantic and httpx

    try:
        return ConnectorInfo(ep.name, ep.value, load_connector(ep), None)
    except Exception as exc:  # a broken plugin must not break the hub; it shows in the status
        return ConnectorInfo(ep.name, ep.value, None, f"{type(exc).__name__}: {exc}")


@cache
def connector_names() -> list[str]:
    """The names registered in ``cxhub.connectors`` (nothing is loaded)."""
    return sorted({ep.name for ep in _group(GROUP)})


@cache
def lookup(name: str) -> ConnectorInfo | None:
    """Connector ``name`` alone, loaded or with its error; None when no package registers it. A
    config loads only the connectors it names, so a command does not import every platform's SDK."""
    for ep in _group(GROUP):
        if ep.name == name:
            return _load(ep)
    return None


@cache
def discover() -> dict[str, ConnectorInfo]:
    """Every connector registered in the ``cxhub.connectors`` group, loaded or with its error."""
    out: dict[str, ConnectorInfo] = {}
    for name in connector_names():
        info = lookup(name)
        if info is not None:
            out[name] = info
    return out


def get(name: str) -> type[Connector]:
    """The connector class registered as ``name``; ``KeyError`` with the reason otherwise."""
    info = lookup(name)
    if info is None:
        raise KeyError(f"unknown connector {name!r}; installed: {connector_names()}")
    if info.cls is None:
        raise KeyError(f"connector {name!r} cannot be loaded: {info.error}")
    return info.cls


@cache
def discover_features() -> list[FeatureInfo]:
    """Every feature registered in ``cxhub.features``: the runnable ones first, in install order,
    then those that cannot run, each with its reason."""
    infos = [load_feature(ep.name, ep.value, ep.load) for ep in _group(FEATURE_GROUP)]
    return install_order(infos)


def installed_features() -> list[FeatureInfo]:
    """The features that can run, in install order."""
    return [i for i in discover_features() if i.feature is not None]


def with_dependencies(names: Iterable[str]) -> set[str]:
    """``names`` and every installed feature they need or follow (``requires`` and ``after``),
    transitively: what a command that uses only some features installs."""
    infos = {i.name: i for i in installed_features()}
    todo, out = list(names), set()
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        info = infos.get(name)
        if info is not None and info.feature is not None:
            todo.extend((*info.feature.requires, *info.feature.after))
    return out
