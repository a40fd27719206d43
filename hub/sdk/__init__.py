"""The cxhub connector SDK: everything a connector imports, and the guide to writing one.

A connector turns one platform into something the hub understands: a source of raw records, or a
place to send messages. It imports only this package (``from hub.sdk import ...``); the hub's
engine (config, mapping, store, features) stays out of reach, so connectors keep working while the
engine changes. docs/connectors.md walks through a complete connector package
(examples/cxhub-connector-example).

Roles: what to subclass
-----------------------
Every connector is one class, declared by class attributes: ``kind`` (its entry-point name, the
``connector:`` value in a config), ``title`` (one line for ``cxhub connectors``), ``Options`` (a
:class:`ConnectorOptions` model), optionally ``requires`` (importable modules it needs) and
``default_mapping`` (a preset mapping). It implements exactly one role:

- :class:`PullSource`: ``read(state, *, full=False) -> Iterator[Batch]``. The hub calls it on a
  schedule or from ``cxhub sync``; each :class:`Batch` carries :class:`RawRecord` objects, the
  :class:`Rejected` ones (unparsable, with a reason: quarantined, never dropped) and the ``state``
  to resume from once the batch is committed. The hub commits a batch and its state in one
  transaction, so the state must be a JSON-serialisable dict and resuming from it must neither skip
  nor (beyond a deliberate overlap) repeat records. ``None`` or ``full=True``: from the beginning.
  A source that can read Arrow columns also sets ``columnar = True`` and yields
  :class:`ColumnBatch` objects from ``read_arrow`` (same arguments, same state rules).
- :class:`PushSource`: ``handle(request: InboundRequest) -> PushResult``. The platform POSTs to
  ``/hooks/{source}``; verify the request first (raise :class:`SignatureError`, nothing is stored),
  then parse it into records plus the exact :class:`Reply` the platform expects. The hub commits
  the records, then replies. ``verify_url`` answers GET URL checks (WeChat's ``echostr``);
  :class:`GuardedPushSource` adds replay-window and nonce checks.
- :class:`Destination`: ``send(message: OutboundMessage) -> Receipt``. The outbox calls it with one
  message (``key`` is its idempotency key) and keeps retrying, dead-lettering and rate-limiting
  around it: declare the platform's ``rate_limits`` (:class:`RateLimit`) and ``max_body_bytes``.
  :class:`HttpDestination` (options :class:`DestinationOptions`) gives a shared ``httpx`` client.

Records, replies, results
-------------------------
:class:`RawRecord` is a record as the platform delivered it: ``source`` (the source's name,
``self.name``), ``external_id`` (the platform's own id: with the source name, the dedup key, so
reading a record twice stores it once) and a JSON-serialisable ``payload`` (datetimes and decimals
allowed). Mapping it to a touchpoint is the job of the source's mapping (YAML), not the connector.
Push sources answer with :class:`Reply` (``Reply.text``, ``Reply.json``) inside a
:class:`PushResult`; destinations return a :class:`Receipt` (the platform's message id and a short
summary without secrets).

Errors: which to raise when
---------------------------
::

    CxhubError
     ├── ConfigError        options that validate but cannot work (missing credential for a mode)
     ├── PayloadError       one inbound request or record is unusable: 4xx, quarantine
     │    ├── SignatureError   not authentic (signature, token, timestamp): 401, nothing stored
     │    └── PayloadTooLarge  over the size limit: 413
     └── ConnectorError     talking to the platform failed
          ├── RetriableError   try again later: timeouts, 5xx, throttling (Throttled), expired token
          │                    (TokenExpired); pass ``retry_after`` (seconds) when the platform says
          └── PermanentError   never succeeds as is: bad recipient, credentials refused, bad request

A pull source raising ``RetriableError`` ends the pass with its committed batches kept; the next
run resumes. ``PermanentError`` ends the pass too and needs a person, not a retry. Messages name the
thing (``target=self.name``) and never a secret or a URL carrying one. :class:`ErrorTable` maps a
platform's error codes to these classes; :func:`check_status`, :func:`call` and :func:`call_json`
do it for HTTP statuses and transport failures.

Options
-------
``Options`` is a pydantic model subclassing :class:`ConnectorOptions` (unknown keys are errors,
reported as ``file:line: key``). Type every credential ``SecretStr`` so ``repr``, logs and
``cxhub config`` show ``***``; call ``.get_secret_value()`` only where the request is built. Use
:data:`Duration` for durations (``"30s"``, ``"5m"``) and ``Field(description=...)`` for docs.

Injected I/O: ConnectorContext
------------------------------
``self.context`` (:class:`ConnectorContext`) holds what the hub injects: ``clock`` (aware UTC
``datetime``; never call ``datetime.now`` directly), ``transport`` (build clients with
``self.context.http_client(base_url)`` so tests pass ``httpx.MockTransport`` or respx instead of
patching), ``kv`` (a :class:`KeyValueStore` shared by all processes: tokens, cursors) and
``secret_key``. Requests-based vendor SDKs go through the same transport with
:func:`route_sdk_through`.

Tokens and signing
------------------
:class:`TokenCache` keeps an access token in ``context.kv`` and refreshes it in one process at a
time. For callbacks: :func:`same` (constant-time compare), :func:`wx_signature` (the WeChat-family
SHA-1 signature), :class:`MsgCrypt` (their AES envelope), :func:`content_hash`,
:func:`parse_epoch` (timestamps, for replay windows), :func:`parse_xml` (defused XML) and
:func:`clean`. :func:`compile_expression` compiles a JMESPath option once into a getter.

Testing: the conformance kit
----------------------------
:mod:`hub.sdk.testing` holds :class:`~hub.sdk.testing.FakeClock` and the suites a connector's
tests subclass: ``ConnectorConformance`` (every connector), ``PullSourceConformance``,
``PushSourceConformance`` and ``DestinationConformance``. Set ``connector_kind`` and ``options``
and override ``make_context`` to inject the faked platform.

Registration
------------
The hub finds connectors through the entry-point group ``cxhub.connectors`` (never by scanning
folders). In the connector package's ``pyproject.toml``::

    [project.entry-points."cxhub.connectors"]
    example_nps = "cxhub_connector_example.nps:NpsAnswersSource"

``pip install`` it next to cxhub and ``cxhub connectors`` lists it (``ok``, or why it cannot load).

This package re-exports those names lazily: ``import hub.sdk`` loads nothing, and each name loads
its module on first use, so a config check does not import a vendor SDK it will not run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.errors import (
        ConfigError,
        ConnectorError,
        CxhubError,
        PayloadError,
        PayloadTooLarge,
        PermanentError,
        RecordError,
        RetriableError,
        SignatureError,
    )
    from hub.privacy import mask_phone, mask_text
    from hub.sdk.callbacks import (
        GuardedPushSource,
        MsgCrypt,
        MsgCryptOptions,
        NonceCache,
        PushOptions,
        WrongApp,
        check_encoding_aes_key,
        clean,
        content_hash,
        decode_utf8,
        parse_epoch,
        parse_json,
        parse_xml,
        query_value,
        raw_body,
        same,
        unparsable,
        wechat_message_id,
        wx_signature,
    )
    from hub.sdk.collector import gc_paused
    from hub.sdk.columns import ColumnBatch
    from hub.sdk.connector import (
        Batch,
        Button,
        Clock,
        Connector,
        ConnectorContext,
        ConnectorOptions,
        Destination,
        InboundRequest,
        KeyValueStore,
        MemoryKeyValueStore,
        NonceStore,
        OutboundMessage,
        PullSource,
        PushResult,
        PushSource,
        RateLimit,
        RawRecord,
        Receipt,
        Rejected,
        Reply,
        utcnow,
    )
    from hub.sdk.destination import DestinationOptions, HttpDestination
    from hub.sdk.durations import Duration, parse_duration
    from hub.sdk.expressions import Getter, compile_expression
    from hub.sdk.http import (
        IDEMPOTENCY_HEADER,
        HttpxAdapter,
        call,
        call_json,
        check_requests_status,
        check_status,
        route_sdk_through,
        sdk_errors,
    )
    from hub.sdk.policy import OUTCOMES, ErrorTable, Throttled, TokenExpired, parse_retry_after
    from hub.sdk.render import buttons_as_links, flatten_markdown, markdown_with_links, split_utf8, trim_utf8, utf8_len
    from hub.sdk.tokens import Fetcher, TokenCache, token_answer

#: module of each public name; loaded on first attribute access (PEP 562)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "hub.sdk.connector": (
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
        "NonceStore",
        "OutboundMessage",
        "PullSource",
        "PushResult",
        "PushSource",
        "RateLimit",
        "RawRecord",
        "Receipt",
        "Rejected",
        "Reply",
        "utcnow",
    ),
    "hub.sdk.destination": ("DestinationOptions", "HttpDestination"),
    "hub.sdk.http": (
        "IDEMPOTENCY_HEADER",
        "HttpxAdapter",
        "call",
        "call_json",
        "check_requests_status",
        "check_status",
        "route_sdk_through",
        "sdk_errors",
    ),
    "hub.sdk.policy": ("OUTCOMES", "ErrorTable", "Throttled", "TokenExpired", "parse_retry_after"),
    "hub.sdk.tokens": ("Fetcher", "TokenCache", "token_answer"),
    "hub.sdk.render": (
        "buttons_as_links",
        "flatten_markdown",
        "markdown_with_links",
        "split_utf8",
        "trim_utf8",
        "utf8_len",
    ),
    "hub.sdk.callbacks": (
        "GuardedPushSource",
        "MsgCrypt",
        "MsgCryptOptions",
        "NonceCache",
        "PushOptions",
        "WrongApp",
        "check_encoding_aes_key",
        "clean",
        "content_hash",
        "decode_utf8",
        "parse_epoch",
        "parse_json",
        "parse_xml",
        "query_value",
        "raw_body",
        "same",
        "unparsable",
        "wechat_message_id",
        "wx_signature",
    ),
    "hub.sdk.durations": ("Duration", "parse_duration"),
    "hub.sdk.collector": ("gc_paused",),
    "hub.sdk.columns": ("ColumnBatch",),
    "hub.sdk.expressions": ("Getter", "compile_expression"),
    "hub.errors": (
        "ConfigError",
        "ConnectorError",
        "CxhubError",
        "PayloadError",
        "PayloadTooLarge",
        "PermanentError",
        "RecordError",
        "RetriableError",
        "SignatureError",
    ),
    "hub.privacy": ("mask_phone", "mask_text"),
}

_WHERE: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

#: submodules reachable as attributes before anyone imported them (``hub.sdk.testing.FakeClock``)
_SUBMODULES = frozenset(
    {
        "callbacks",
        "collector",
        "columns",
        "connector",
        "destination",
        "durations",
        "expressions",
        "http",
        "policy",
        "render",
        "signing",
        "testing",
        "tokens",
    }
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "OUTCOMES",
    "Batch",
    "Button",
    "Clock",
    "ColumnBatch",
    "ConfigError",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorOptions",
    "CxhubError",
    "Destination",
    "DestinationOptions",
    "Duration",
    "ErrorTable",
    "Fetcher",
    "Getter",
    "GuardedPushSource",
    "HttpDestination",
    "HttpxAdapter",
    "InboundRequest",
    "KeyValueStore",
    "MemoryKeyValueStore",
    "MsgCrypt",
    "MsgCryptOptions",
    "NonceCache",
    "NonceStore",
    "OutboundMessage",
    "PayloadError",
    "PayloadTooLarge",
    "PermanentError",
    "PullSource",
    "PushOptions",
    "PushResult",
    "PushSource",
    "RateLimit",
    "RawRecord",
    "Receipt",
    "RecordError",
    "Rejected",
    "Reply",
    "RetriableError",
    "SignatureError",
    "Throttled",
    "TokenCache",
    "TokenExpired",
    "WrongApp",
    "buttons_as_links",
    "call",
    "call_json",
    "check_encoding_aes_key",
    "check_requests_status",
    "check_status",
    "clean",
    "compile_expression",
    "content_hash",
    "decode_utf8",
    "flatten_markdown",
    "gc_paused",
    "markdown_with_links",
    "mask_phone",
    "mask_text",
    "parse_duration",
    "parse_epoch",
    "parse_json",
    "parse_retry_after",
    "parse_xml",
    "query_value",
    "raw_body",
    "route_sdk_through",
    "same",
    "sdk_errors",
    "split_utf8",
    "token_answer",
    "trim_utf8",
    "unparsable",
    "utcnow",
    "utf8_len",
    "wechat_message_id",
    "wx_signature",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
