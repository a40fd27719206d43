"""The running hub: config + store + connector instances + ingestor + feature hooks.

Features plug in through the entry-point group ``cxhub.features`` (see :mod:`hub.feature`): each
one's ``install(runtime)`` appends ingest hooks, periodic jobs, web routes and services, in the
order the features' declared dependencies give.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.config import Config
from hub.errors import ConfigError
from hub.mapping import CompiledMapping
from hub.registry import installed_features
from hub.sdk.connector import Clock, Connector, ConnectorContext, Destination, PullSource, PushSource, utcnow
from hub.store import Store

if TYPE_CHECKING:
    import httpx

    from hub.identity import MergeHook
    from hub.ingest import IngestHook, Ingestor
    from hub.transport import Transport

log = logging.getLogger("cxhub")


@dataclass
class PeriodicJob:
    """A job ``cxhub run`` runs every ``seconds`` (on the leader only when ``leader_only``)."""

    name: str
    seconds: float
    func: Callable[[], Any]
    leader_only: bool = True


def quarantine_retention_job(rt: Runtime) -> PeriodicJob:
    """Hourly, on the leader: delete quarantined records older than ``store.quarantine_retention_days``."""

    def purge() -> int:
        from hub.replay import purge_quarantine
        from hub.retention import quarantine_days

        days = quarantine_days(rt.config)  # privacy.retention.quarantine, or the store's setting
        return 0 if days is None else purge_quarantine(rt.store, rt.clock(), days)

    return PeriodicJob("quarantine-retention", 3600, purge, leader_only=True)


def privacy_retention_job(rt: Runtime) -> PeriodicJob:
    """Hourly, on the leader: the retention of every other data class (``privacy.retention``)."""

    def purge() -> int:
        from hub.retention import purge_hourly

        return purge_hourly(rt)

    return PeriodicJob("privacy-retention", 3600, purge, leader_only=True)


class Runtime:
    """Everything one ``cxhub`` process needs, built from a loaded config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utcnow,
        transport: httpx.BaseTransport | None = None,
        features: Collection[str] | None = None,
    ):
        """``features`` limits the installed features to these names (None: every installed one)."""
        if not config.secret_key:
            raise ConfigError(
                "secret_key: required; set CXHUB_SECRET_KEY (or secret_key: ${CXHUB_SECRET_KEY} in the config)",
                file=config.file,
            )
        self.config = config
        self.clock = clock
        self.store = Store(
            config.store_url, echo=config.raw.store.echo, pool_size=config.raw.store.pool_size, clock=clock
        )
        from hub.outbox.messages import seal_recipients

        seal_recipients(self.store.engine, config.secret_key)  # messages' recipients sealed at rest
        self.context = ConnectorContext(clock=clock, transport=transport, kv=self.store, secret_key=config.secret_key)
        from hub.transport import shared_nonces

        # the push receivers' replay protection, shared by every process (store table / NATS bucket)
        self.context.nonces = shared_nonces(self)
        self.hooks: list[IngestHook] = []
        self.jobs: list[PeriodicJob] = []
        #: FastAPI routers features add, or zero-argument factories of them (built when the web app is)
        self.routers: list[Any] = []
        self.services: list[Any] = []  # objects with start() and stop(), run by `cxhub run`
        from hub.console import Console

        #: the web console's pages, menu entries and overview tiles that features add (hub/console)
        self.console = Console()
        self._connectors: dict[tuple[str, str], Connector] = {}
        self.features: dict[str, Any] = {}
        #: what moves features' rows when customers merge (each installed feature's ``on_merge``)
        self.merges: list[MergeHook] = []
        self.jobs.append(quarantine_retention_job(self))
        self.jobs.append(privacy_retention_job(self))
        for info in installed_features():
            assert info.feature is not None
            if features is not None and info.name not in features:
                continue
            self.features[info.name] = info.feature.install(self)
            self.merges.append(info.feature.on_merge)

    @functools.cached_property
    def ingestor(self) -> Ingestor:
        """The one ingest path (built on first use: a command that only reads never loads it), with
        the hooks features added (``hooks``: the same list, so a hook added later runs too)."""
        from hub.ingest import Ingestor

        ingestor = Ingestor(
            self.store, self.config.secret_key, (), self.clock, keep_raw=self.config.raw.store.keep_raw_payloads
        )
        ingestor.hooks = self.hooks
        ingestor.identity.merges = self.merges  # the same list, as the hooks
        return ingestor

    @functools.cached_property
    def transport(self) -> Transport:
        """How the push receivers hand verified records on (``transport:``; see :mod:`hub.transport`)."""
        from hub.transport import build_transport

        return build_transport(self)

    # ------------------------------------------------------------ connectors

    def source(self, name: str) -> Connector:
        """The connector instance of source ``name``."""
        spec = self.config.sources.get(name)
        if spec is None:
            raise ConfigError(f"no source {name!r}; sources: {sorted(self.config.sources)}", file=self.config.file)
        key = ("source", name)
        if key not in self._connectors:
            self._connectors[key] = spec.cls(name, spec.options, self.context)
        return self._connectors[key]

    def push_source(self, name: str) -> PushSource | None:
        spec = self.config.sources.get(name)
        if spec is None or not spec.config.enabled or not issubclass(spec.cls, PushSource):
            return None
        src = self.source(name)
        assert isinstance(src, PushSource)
        return src

    def pull_source(self, name: str) -> PullSource:
        src = self.source(name)
        if not isinstance(src, PullSource):
            raise ConfigError(f"source {name!r} ({type(src).kind}) is not a pull source", file=self.config.file)
        return src

    def destination(self, name: str) -> Destination:
        """The connector instance of destination ``name``."""
        spec = self.config.destinations.get(name)
        if spec is None:
            raise ConfigError(
                f"no destination {name!r}; destinations: {sorted(self.config.destinations)}",
                file=self.config.file,
            )
        key = ("destination", name)
        if key not in self._connectors:
            self._connectors[key] = spec.cls(name, spec.options, self.context)
        dst = self._connectors[key]
        assert isinstance(dst, Destination)
        return dst

    def mapping(self, source: str) -> CompiledMapping:
        spec = self.config.sources[source]
        assert spec.mapping is not None
        return spec.mapping

    @property
    def mappings(self) -> dict[str, CompiledMapping]:
        return {n: s.mapping for n, s in self.config.sources.items() if s.mapping is not None}

    def migrate(self) -> None:
        self.store.migrate()

    def close(self) -> None:
        for c in self._connectors.values():
            c.close()
        self.store.dispose()
