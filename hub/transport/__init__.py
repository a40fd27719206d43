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
from typing import TYPE_CHECKING

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


def shared_nonces(rt: Runtime) -> NonceStore | None:
    """The replay-protection memory every receiving process of this deployment shares."""
    kind = rt.config.raw.transport.kind
    if kind == "nats":
        from hub.transport.nats import KvNonces

        return KvNonces(rt.config.raw.transport, rt.config.raw.server.replay_window_seconds)
    if rt.store.is_sqlite:
        return None  # one process per SQLite store: the memory of the process is everyone's
    from hub.transport.nonces import StoreNonces

    return StoreNonces(rt.store)


def build_transport(rt: Runtime, writer: GroupCommitWriter | None = None) -> Transport:
    """The transport of the config (``transport.kind``); ``writer`` for the direct transport."""
    if rt.config.raw.transport.kind == "nats":
        from hub.transport.nats import NatsTransport

        return NatsTransport(rt.config.raw.transport, nonces=rt.context.nonces)
    from hub.group_commit import GroupCommitWriter
    from hub.transport.direct import DirectTransport

    return DirectTransport(rt, writer or GroupCommitWriter(rt.ingestor))


__all__ = ["ROLES", "Transport", "build_transport", "shared_nonces"]
