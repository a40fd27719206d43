"""Between the push receivers and the ingest: how a verified record reaches the store.

- ``direct`` (the default, and the embedded setup): the receiver commits the records itself, through
  the group-commit writer (:mod:`hub.group_commit`), and answers the platform after the commit.
- ``nats``: the receiver publishes each verified raw record to a JetStream stream and answers the
  platform once JetStream has acknowledged the publish; ingest workers (``cxhub run --role
  worker``) pull the records in batches, run the same ingest pipeline, commit, then ack
  (:mod:`hub.transport.nats`). A slow or unreachable store then delays the workers, never the
  platforms' answers.

Both give the receivers a replay-protection memory that every process shares
(:class:`~hub.sdk.connector.NonceStore`): a table of the store for ``direct`` on PostgreSQL
(:mod:`hub.transport.nonces`), a JetStream key-value bucket for ``nats``. SQLite is one process:
its receivers keep the memory in the process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from hub.sdk.connector import NonceStore, RawRecord, Rejected

if TYPE_CHECKING:
    from hub.group_commit import GroupCommitWriter
    from hub.runtime import Runtime

#: the roles of ``cxhub run``: the edge (HTTP receivers), the back (ingest, scheduler, delivery), or both
ROLES = ("all", "receiver", "worker")


class Transport(ABC):
    """Where a receiver hands the records of a verified push (see the module docstring)."""

    kind: str

    async def start(self) -> None:
        """Connect (called when the web app starts, on its event loop)."""
        return None

    async def stop(self) -> None:
        """Finish what was handed off and disconnect (when the web app stops)."""
        return None

    @property
    def connected(self) -> bool:
        """Whether a hand-off can succeed now (``/readyz``)."""
        return True

    @abstractmethod
    async def hand_off(self, source: str, records: Sequence[RawRecord], rejected: Sequence[Rejected]) -> None:
        """Return once the records are durable (committed to the store, or acknowledged by
        JetStream); raise otherwise: the receiver answers 503 and the platform retries."""


class SharedNonces(NonceStore, Protocol):
    """A shared nonce memory that an event loop can wait on."""

    async def claim_async(self, key: str, digest: bytes, ttl: float) -> bool: ...


#: the claims a connector made while the receiver handled the current request
_claims: ContextVar[list[tuple[str, bytes, float]] | None] = ContextVar("cxhub_nonce_claims", default=None)


class DeferredNonces:
    """The :class:`~hub.sdk.connector.NonceStore` connectors get: inside a receiver's request a
    claim is only noted (the connector's ``handle`` runs on the event loop and must not wait on the
    network), and the receiver settles the noted claims, awaiting the shared memory, before it
    hands the records on (:meth:`settle`); a refused claim refuses the request as the connector
    would have. Outside a request (a test, a tool) a claim asks the shared memory at once."""

    def __init__(self, backend: SharedNonces):
        self.backend = backend

    def claim(self, key: str, digest: bytes, ttl: float) -> bool:
        pending = _claims.get()
        if pending is None:
            return self.backend.claim(key, digest, ttl)
        pending.append((key, digest, ttl))
        return True

    @staticmethod
    def collect() -> list[tuple[str, bytes, float]]:
        """Start noting this request's claims (call in the request's own task)."""
        pending: list[tuple[str, bytes, float]] = []
        _claims.set(pending)
        return pending

    async def settle(self, pending: list[tuple[str, bytes, float]]) -> bool:
        """Make the noted claims; False when one was seen with another body (a replay)."""
        ok = True
        for key, digest, ttl in pending:
            ok = await self.backend.claim_async(key, digest, ttl) and ok
        pending.clear()
        return ok


def shared_nonces(rt: Runtime) -> DeferredNonces | None:
    """The replay-protection memory every receiving process of this deployment shares."""
    kind = rt.config.raw.transport.kind
    backend: SharedNonces
    if kind == "nats":
        from hub.transport.nats import KvNonces

        backend = KvNonces(rt.config.raw.transport, rt.config.raw.server.replay_window_seconds)
    elif rt.store.is_sqlite:
        return None  # one process per SQLite store: the memory of the process is everyone's
    else:
        from hub.transport.nonces import StoreNonces

        backend = StoreNonces(rt.store)
    return DeferredNonces(backend)


def build_transport(rt: Runtime, writer: GroupCommitWriter | None = None) -> Transport:
    """The transport of the config (``transport.kind``); ``writer`` for the direct transport."""
    if rt.config.raw.transport.kind == "nats":
        from hub.transport.nats import NatsTransport

        nonces = rt.context.nonces
        return NatsTransport(
            rt.config.raw.transport, nonces=nonces.backend if isinstance(nonces, DeferredNonces) else None
        )
    from hub.group_commit import GroupCommitWriter
    from hub.transport.direct import DirectTransport

    return DirectTransport(rt, writer or GroupCommitWriter(rt.ingestor))


__all__ = ["ROLES", "DeferredNonces", "SharedNonces", "Transport", "build_transport", "shared_nonces"]
