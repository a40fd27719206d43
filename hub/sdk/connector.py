"""The public connector API: the only part of ``hub`` a connector imports (with errors and model).

A connector is a class registered in the entry-point group ``cxhub.connectors``::

    [project.entry-points."cxhub.connectors"]
    jsonl = "connectors.jsonl:JsonlSource"

It declares its identity as class attributes, its options as a pydantic model (validated when the
config loads, errors naming file:line:key), and implements one role:

- :class:`PushSource`: ``handle(request) -> PushResult`` verifies and parses an inbound HTTP request
  into raw records plus the exact reply the platform expects. Raise ``SignatureError`` before
  anything else when the request is not authentic. The hub commits the records, then replies.
- :class:`PullSource`: ``read(state) -> Iterator[Batch]``; each batch carries the state to resume
  from after it. The hub commits a batch and its state in one transaction.
- :class:`Destination`: ``send(message) -> Receipt``; raise ``RetriableError`` (with
  ``retry_after`` when known) or ``PermanentError``. Declares its rate limits.

I/O is injected through :class:`ConnectorContext` (HTTP transport, clock, shared key-value store),
so tests pass an ``httpx.MockTransport`` or respx instead of patching.
"""

from __future__ import annotations

import functools
import importlib.util
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from hub.errors import PayloadError

if TYPE_CHECKING:
    import httpx


def utcnow() -> datetime:
    """The real clock (aware UTC)."""
    return datetime.now(UTC)


Clock = Callable[[], datetime]


class ConnectorOptions(BaseModel):
    """Base for a connector's options: unknown keys are errors, secrets are ``SecretStr``."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as a source delivered it, before mapping.

    ``external_id`` is the source's own id for it (MsgId, notify_id, order id...): the dedup key
    together with the source name. ``payload`` must be JSON-serialisable (dict from JSON, XML,
    form or SQL row, with datetimes / decimals allowed).
    """

    source: str
    external_id: str
    payload: Any
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Rejected:
    """Something a source read but could not parse (bad JSON line, non-UTF-8 row...). It is
    quarantined with ``reason`` in the same transaction as its batch: never silently dropped."""

    external_id: str | None
    payload: Any
    reason: str


@dataclass(frozen=True)
class Batch:
    """Records read by a pull source, and the state to resume from once they are committed."""

    records: list[RawRecord]
    state: dict[str, Any]
    rejected: list[Rejected] = field(default_factory=list)


class KeyValueStore(Protocol):
    """Shared, durable key-value store (the hub's store) for tokens and connector state."""

    def get(self, key: str) -> tuple[str, datetime | None] | None:
        """Value and expiry of ``key``, or None when absent or expired."""

    def put(self, key: str, value: str, expires_at: datetime | None = None) -> None:
        """Set ``key``."""

    def lock(self, key: str) -> Any:
        """A context manager held by one process at a time (token refresh)."""


class NonceStore(Protocol):
    """Replay protection shared by every receiving process (the hub's store, or the transport's
    key-value bucket): without it, two processes each accept one of two bodies sent with the same
    (timestamp, nonce)."""

    def claim(self, key: str, digest: bytes, ttl: float) -> bool:
        """True when ``key`` is new (remembered with ``digest`` for ``ttl`` seconds) or was seen
        with this same ``digest`` (a platform retry); False when it was seen with another one."""


class _MemoryLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class MemoryKeyValueStore:
    """In-process ``KeyValueStore`` for tests and single-process tools."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self._data: dict[str, tuple[str, datetime | None]] = {}
        self._clock = clock

    def get(self, key: str) -> tuple[str, datetime | None] | None:
        item = self._data.get(key)
        if item is None or (item[1] is not None and item[1] <= self._clock()):
            return None
        return item

    def put(self, key: str, value: str, expires_at: datetime | None = None) -> None:
        self._data[key] = (value, expires_at)

    def lock(self, key: str) -> Any:
        return _MemoryLock()


@dataclass
class ConnectorContext:
    """What the hub gives a connector: clock, HTTP transport, shared key-value store, secret key."""

    clock: Clock = utcnow
    transport: httpx.BaseTransport | None = None
    kv: KeyValueStore = field(default_factory=MemoryKeyValueStore)
    secret_key: bytes = b""
    #: the receivers' shared nonce memory; None: each push source remembers in its own process
    nonces: NonceStore | None = None
    timeout: float = 10.0

    def http_client(self, base_url: str = "", **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` using the injected transport (respx / MockTransport in tests) and one
        shared TLS context (loading the CA bundle costs ~35 ms per client; hundreds of robots add up)."""
        kwargs.setdefault("timeout", self.timeout)
        if self.transport is not None:
            kwargs.setdefault("transport", self.transport)
        else:
            kwargs.setdefault("verify", shared_ssl_context())
        import httpx  # here, not at the top: loading a connector class (every CLI command) skips it

        return httpx.Client(base_url=base_url, **kwargs)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The TLS context every connector client shares (certifi's CA bundle, as httpx uses)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class Connector(ABC):
    """Base of every connector. Identity is declared as class attributes."""

    #: entry-point name, also the ``connector:`` value in config
    kind: ClassVar[str]
    #: one line for ``cxhub connectors``
    title: ClassVar[str] = ""
    #: pydantic model of the ``options:`` block
    Options: ClassVar[type[ConnectorOptions]] = ConnectorOptions
    #: importable modules this connector needs (an optional SDK); missing ones show in the status
    requires: ClassVar[tuple[str, ...]] = ()
    #: preset mapping used when the source config names none
    default_mapping: ClassVar[str | None] = None

    def __init__(self, name: str, options: ConnectorOptions, context: ConnectorContext | None = None):
        self.name = name
        self.options = options
        self.context = context or ConnectorContext()

    @classmethod
    def roles(cls) -> list[str]:
        """Which of push / pull / destination this class implements."""
        out = []
        if issubclass(cls, PushSource):
            out.append("push")
        if issubclass(cls, PullSource):
            out.append("pull")
        if issubclass(cls, Destination):
            out.append("destination")
        return out

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """Modules in ``requires`` that cannot be imported here."""
        return [m for m in cls.requires if importlib.util.find_spec(m.split(".")[0]) is None]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""


# ---------------------------------------------------------------- push


@dataclass(frozen=True)
class InboundRequest:
    """An HTTP request to ``/hooks/{source}``, as the connector sees it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    received_at: datetime = field(default_factory=utcnow)
    remote: str | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def text(self) -> str:
        """The body as UTF-8 text; ``PayloadError`` when it is not."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"body is not UTF-8 (byte {exc.start})") from None


@dataclass(frozen=True)
class Reply:
    """The exact HTTP reply the platform expects."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Reply:
        return cls(status=status, body=text.encode("utf-8"))

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Reply:
        import json

        return cls(
            status=status,
            body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            content_type="application/json; charset=utf-8",
        )


@dataclass(frozen=True)
class PushResult:
    """Records to commit, then the reply to send once they are committed."""

    records: list[RawRecord]
    reply: Reply
    #: verified but unparsable payloads: quarantined in the same transaction, the platform is
    #: still answered with ``reply`` (so it does not retry forever)
    rejected: list[Rejected] = field(default_factory=list)


class PushSource(Connector):
    """A platform that pushes events to ``/hooks/{source}``."""

    #: bodies larger than this are refused with 413 before the connector sees them
    max_body_bytes: ClassVar[int] = 1024 * 1024
    #: content types the receiver accepts (415 otherwise); empty: any. A missing header is allowed.
    content_types: ClassVar[tuple[str, ...]] = ()
    #: replay window (seconds) for connectors that check the platform's timestamp; the receiver
    #: sets it from ``server.replay_window_seconds`` (0 disables); a connector option may override
    replay_window_seconds: float = 300.0

    def verify_url(self, request: InboundRequest) -> Reply:
        """Answer a GET URL-verification (WeChat echostr...). Default: not supported (405)."""
        return Reply.text("method not allowed", status=405)

    @abstractmethod
    def handle(self, request: InboundRequest) -> PushResult:
        """Verify (raise ``SignatureError`` first), decrypt and parse a POST into raw records."""


# ---------------------------------------------------------------- pull


class PullSource(Connector):
    """A source the hub reads on a schedule, resuming from a state it keeps in the store."""

    #: True when reading a batch never waits long (a local file, a database cursor): the sync
    #: then reads and maps the next batch while PostgreSQL still writes the last one, whose
    #: transaction stays open meanwhile (``Ingestor.ingest_stream``). Sources whose reads can
    #: wait on a remote API or its rate limit keep False: each batch commits before the next read.
    overlap_commits: bool = False

    @abstractmethod
    def read(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[Batch]:
        """Yield batches after ``state`` (None or ``full=True``: from the beginning)."""

    def estimate(self, state: dict[str, Any] | None) -> int | None:
        """How many records a pass may read (for the progress bar), or None when unknown."""
        return None


# ---------------------------------------------------------------- destinations


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` sends per ``per_seconds``; ``block_seconds``: how long the platform
    blocks a sender that exceeds it (DingTalk robots: 600 s)."""

    limit: int
    per_seconds: float
    scope: str = "destination"  # or "recipient"
    block_seconds: float = 0.0


@dataclass(frozen=True)
class Button:
    """A button on a message (acknowledge, open survey...): ``url`` is the link it opens.

    ``value``, when set, makes it a callback button on platforms whose cards call back (Feishu
    ``card.action.trigger``, WeCom ``template_card_event``, DingTalk interactive cards): the
    platform sends ``value`` back, signed, with who pressed it, and nothing opens. Destinations
    without callbacks (group robots) show the link instead."""

    label: str
    url: str
    value: dict[str, Any] | None = None


@dataclass(frozen=True)
class OutboundMessage:
    """One message to send. ``key`` is the idempotency key derived from its cause."""

    key: str
    title: str
    body: str  # Markdown-flavoured text; destinations render or flatten it
    to: list[str] = field(default_factory=list)  # user ids / openids / phones / emails
    buttons: list[Button] = field(default_factory=list)
    mention: list[str] = field(default_factory=list)
    template: str | None = None  # platform template id, where the platform uses templates
    data: dict[str, Any] = field(default_factory=dict)  # template fields and extras
    url: str | None = None  # primary link (survey link, case page)


@dataclass(frozen=True)
class Receipt:
    """What the platform answered: its message id and a short, secret-free summary."""

    message_id: str | None = None
    detail: str = ""


class Destination(Connector):
    """Somewhere cxhub sends messages: a robot, an app, SMS, email..."""

    #: declared platform limits; the outbox keeps budgets for them in the store
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()
    #: the most characters/bytes one message body may have (digests split beyond it)
    max_body_bytes: ClassVar[int | None] = None

    @abstractmethod
    def send(self, message: OutboundMessage) -> Receipt:
        """Send one message; raise ``RetriableError`` or ``PermanentError``."""


#: the entry-point group a package registers its connectors in
CONNECTOR_GROUP = "cxhub.connectors"


def load_connector(entry_point: Any) -> type[Connector]:
    """The class an entry point of :data:`CONNECTOR_GROUP` names; ``TypeError`` when it is not a
    :class:`Connector` (the import's own error otherwise)."""
    cls = entry_point.load()
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"{entry_point.value} is not a cxhub Connector class")
    return cls


__all__ = [
    "CONNECTOR_GROUP",
    "Batch",
    "Button",
    "Clock",
    "Connector",
    "ConnectorContext",
    "ConnectorOptions",
    "Destination",
    "InboundRequest",
    "KeyValueStore",
    "MemoryKeyValueStore",
    "OutboundMessage",
    "PullSource",
    "PushResult",
    "PushSource",
    "RateLimit",
    "RawRecord",
    "Receipt",
    "Rejected",
    "Reply",
    "load_connector",
    "utcnow",
]
