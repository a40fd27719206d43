"""The connector conformance kit: what every connector's own tests run, cxhub's and third parties'.

Subclass a suite in a test module and set a few attributes; pytest collects the inherited tests::

    from hub.sdk.testing import ConnectorConformance, PullSourceConformance

    class TestNpsConformance(PullSourceConformance):
        connector_kind = "example_nps"              # the entry-point name
        options = {"base_url": "https://nps.test", "api_key": "k-secret"}

        def make_context(self) -> ConnectorContext:  # the platform, faked
            return ConnectorContext(clock=FakeClock(), transport=httpx.MockTransport(fake_api))

- :class:`ConnectorConformance`: every connector. The entry point loads, identity and roles are
  declared, options validate, unknown keys are refused, secrets never show in ``repr``, JSON,
  validation errors or the options schema, and building the connector does no I/O.
- :class:`PullSourceConformance`: a pull source reading a faked platform. Batches carry records
  with usable ids and JSON-serialisable payloads, and a JSON-serialisable state the source resumes
  from exactly (after a JSON round trip, as the store hands it back); ``full=True`` starts over.
- :class:`PushSourceConformance`: a push source. An authentic request gives records and a reply;
  a tampered or unsigned one raises ``SignatureError`` before anything is parsed.
- :class:`DestinationConformance`: a destination against a faked platform. 5xx, 429 and
  connection failures raise ``RetriableError``, a refused request raises a ``ConnectorError``,
  a success returns a ``Receipt``; no message names a secret.

:class:`FakeClock` is the clock those tests move by hand. The suites import pytest and pydantic
when they run, never when this module is imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import httpx

    from hub.sdk.connector import (
        Batch,
        Connector,
        ConnectorContext,
        ConnectorOptions,
        Destination,
        InboundRequest,
        OutboundMessage,
        PullSource,
        PushSource,
    )


class FakeClock:
    """A clock tests move by hand: ``clock()`` returns now, ``clock.advance(seconds=...)`` moves it."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 11, 2, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


def _json_default(value: Any) -> Any:
    # what the hub's store encoder accepts besides plain JSON (RawRecord's documented contract)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def secret_values(value: Any) -> list[str]:
    """Every non-empty ``SecretStr`` / ``SecretBytes`` value inside validated options (nested models,
    lists and dicts included), as text: the strings no message, repr or schema may contain."""
    from pydantic import BaseModel, SecretBytes, SecretStr

    out: list[str] = []
    if isinstance(value, SecretStr):
        if value.get_secret_value():
            out.append(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        if value.get_secret_value():
            out.append(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            out.extend(secret_values(getattr(value, name)))
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(secret_values(v))
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            out.extend(secret_values(v))
    return out


def assert_no_secrets(text: str, secrets: list[str], where: str) -> None:
    """Fail naming ``where`` (never the secret itself) when ``text`` contains one of ``secrets``."""
    for i, secret in enumerate(secrets):
        assert secret not in text, f"{where} shows secret #{i + 1} of the options"


def _refuse_all(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected {request.method} request while building the connector")


class ConnectorConformance:
    """Checks for every connector. Subclass (``class TestMine(ConnectorConformance)``) and set
    ``connector_kind`` and ``options`` (a dict that validates; put a value in each secret option,
    so the secret checks have something to look for)."""

    connector_kind: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    #: the source or destination name the connector is built with
    connector_name: ClassVar[str] = "conformance"

    # ------------------------------------------------------------ hooks

    def connector_class(self) -> type[Connector]:
        """The class registered as ``connector_kind`` in the ``cxhub.connectors`` entry points."""
        from hub.sdk.connector import CONNECTOR_GROUP, load_connector

        found = entry_points(group=CONNECTOR_GROUP, name=self.connector_kind)
        assert found, f"{self.connector_kind} is not in the {CONNECTOR_GROUP} entry points"
        return load_connector(next(iter(found)))

    def validated_options(self) -> ConnectorOptions:
        return self.connector_class().Options.model_validate(self.options)

    def make_context(self) -> ConnectorContext:
        """The context the connector runs with; override to inject the faked platform's transport."""
        from hub.sdk.connector import ConnectorContext

        return ConnectorContext(clock=FakeClock(), secret_key=b"conformance-secret-key")

    def make_connector(self, context: ConnectorContext | None = None) -> Connector:
        cls = self.connector_class()
        return cls(self.connector_name, self.validated_options(), context or self.make_context())

    def secrets(self) -> list[str]:
        return secret_values(self.validated_options())

    # ------------------------------------------------------------ checks

    def test_registered_by_entry_point(self) -> None:
        cls = self.connector_class()  # found and loaded through the entry point, a Connector
        missing = cls.missing_requirements()
        assert not missing, f"{self.connector_kind}: missing {', '.join(missing)}"

    def test_identity_declared(self) -> None:
        from hub.sdk.connector import ConnectorOptions

        cls = self.connector_class()
        assert cls.kind == self.connector_kind, "kind must equal the entry-point name"
        assert cls.title and "\n" not in cls.title, "a one-line title shows in `cxhub connectors`"
        assert cls.__doc__, "connector classes need a docstring"
        assert isinstance(cls.Options, type) and issubclass(cls.Options, ConnectorOptions)

    def test_roles_declared(self) -> None:
        cls = self.connector_class()
        roles = cls.roles()
        assert roles, "a connector subclasses PushSource, PullSource or Destination"
        assert set(roles) <= {"push", "pull", "destination"}
        assert not ({"push", "pull"} <= set(roles)), "a source is either pushed to or pulled from, not both"

    def test_options_validate_and_reject_unknown_keys(self) -> None:
        import pytest
        from pydantic import ValidationError

        cls = self.connector_class()
        cls.Options.model_validate(self.options)
        with pytest.raises(ValidationError):
            cls.Options.model_validate({**self.options, "no_such_option_xyz": 1})

    def test_options_round_trip_through_json(self) -> None:
        # `cxhub config` and the options schema work on the dumped form
        opts = self.validated_options()
        json.loads(opts.model_dump_json())
        schema = type(opts).model_json_schema()
        assert schema.get("type") == "object"

    def test_secrets_never_in_repr(self) -> None:
        opts = self.validated_options()
        secrets = secret_values(opts)
        assert_no_secrets(repr(opts) + str(opts), secrets, "repr/str of the options")
        assert_no_secrets(opts.model_dump_json(), secrets, "the options as JSON")
        assert_no_secrets(json.dumps(type(opts).model_json_schema()), secrets, "the options schema")

    def test_secrets_never_in_validation_errors(self) -> None:
        # the config loader shows each error's message; a validator must not quote a secret in it
        from pydantic import ValidationError

        cls = self.connector_class()
        secrets = self.secrets()
        broken: list[dict[str, Any]] = [{**self.options, "no_such_option_xyz": 1}]
        for key in self.options:
            broken.append({**self.options, key: {"not": ["a valid value"]}})
            broken.append({k: v for k, v in self.options.items() if k != key})
        for data in broken:
            try:
                cls.Options.model_validate(data)
            except ValidationError as exc:
                assert_no_secrets(" ".join(str(e["msg"]) for e in exc.errors()), secrets, "a validation error")

    def test_building_does_no_io(self) -> None:
        # connectors are built when the config loads (`cxhub check`): platforms are called on use only
        import httpx

        from hub.sdk.connector import ConnectorContext

        base = self.make_context()
        context = ConnectorContext(
            clock=base.clock, transport=httpx.MockTransport(_refuse_all), kv=base.kv, secret_key=base.secret_key
        )
        connector = self.make_connector(context)
        assert connector.name == self.connector_name
        connector.close()
        connector.close()  # idempotent: the hub may close on both shutdown and reload


class PullSourceConformance(ConnectorConformance):
    """Checks for a pull source reading a faked platform: override :meth:`make_context` (a transport
    serving a fixed data set) or :meth:`make_connector`. The data set must give at least
    ``min_records`` records; two batches or more also check resuming from the middle."""

    min_records: ClassVar[int] = 1
    #: True when a pass re-reads an overlap before its committed state on purpose (the hub's dedup
    #: absorbs it); resuming then checks that nothing new appears instead of nothing at all
    rereads_overlap: ClassVar[bool] = False

    def _source(self) -> PullSource:
        from hub.sdk.connector import PullSource

        source = self.make_connector()
        assert isinstance(source, PullSource)
        return source

    def _pass(self, state: dict[str, Any] | None, *, full: bool = False) -> list[Batch]:
        from hub.sdk.connector import Batch

        source = self._source()
        try:
            batches = list(source.read(state, full=full))
        finally:
            source.close()
        assert all(isinstance(b, Batch) for b in batches), "read() yields Batch objects"
        return batches

    @staticmethod
    def _ids(batches: list[Batch]) -> list[str]:
        return [r.external_id for b in batches for r in b.records]

    @staticmethod
    def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
        # the store keeps the state as JSON and hands back what json.loads gives
        loaded: dict[str, Any] = json.loads(json.dumps(state))
        return loaded

    def test_pull_declared(self) -> None:
        assert "pull" in self.connector_class().roles()

    def test_batches_carry_usable_records(self) -> None:
        from hub.sdk.connector import RawRecord, Rejected

        batches = self._pass(None)
        ids = self._ids(batches)
        assert len(ids) >= self.min_records, f"the faked platform gave {len(ids)} records"
        for batch in batches:
            for r in batch.records:
                assert isinstance(r, RawRecord)
                assert r.source == self.connector_name, "RawRecord.source is the source's name"
                assert isinstance(r.external_id, str) and r.external_id, "external_id: a non-empty string"
                json.dumps(r.payload, default=_json_default)
                assert r.received_at.tzinfo is not None, "received_at is timezone-aware"
            for rej in batch.rejected:
                assert isinstance(rej, Rejected) and rej.reason, "a rejected record says why"
        assert len(set(ids)) == len(ids), "one pass reads each record once"

    def test_state_is_json_serialisable(self) -> None:
        for batch in self._pass(None):
            assert isinstance(batch.state, dict), "Batch.state is a dict"
            assert self._roundtrip(batch.state) == batch.state, "Batch.state survives a JSON round trip"

    def test_resumes_from_its_state(self) -> None:
        first = self._pass(None)
        assert first, "read() yields at least one batch"
        seen = set(self._ids(first))
        again = self._ids(self._pass(self._roundtrip(first[-1].state)))
        if self.rereads_overlap:
            assert set(again) <= seen, "nothing new upstream, nothing new read"
        else:
            assert again == [], "resuming from the last state reads nothing already committed"
        if len(first) > 1:
            rest = self._ids(self._pass(self._roundtrip(first[0].state)))
            later = self._ids(first[1:])
            if self.rereads_overlap:
                assert set(later) <= set(rest) <= seen
            else:
                assert rest == later, "resuming after the first batch reads exactly the batches after it"

    def test_full_pass_starts_over(self) -> None:
        first = self._pass(None)
        full = self._pass(self._roundtrip(first[-1].state), full=True)
        assert set(self._ids(full)) == set(self._ids(first))


class PushSourceConformance(ConnectorConformance):
    """Checks for a push source: implement :meth:`signed_request` (an authentic request, as the
    platform would send it with ``options``' credentials, at the context clock's time)."""

    def signed_request(self, clock: FakeClock) -> InboundRequest:
        raise NotImplementedError("return an authentic InboundRequest for the options")

    def _source(self) -> tuple[PushSource, FakeClock]:
        from hub.sdk.connector import PushSource

        clock = FakeClock()
        context = self.make_context()
        context.clock = clock
        source = self.make_connector(context)
        assert isinstance(source, PushSource)
        return source, clock

    def test_push_declared(self) -> None:
        assert "push" in self.connector_class().roles()

    def test_authentic_request_gives_records_and_a_reply(self) -> None:
        from hub.sdk.connector import PushResult, RawRecord, Reply

        source, clock = self._source()
        result = source.handle(self.signed_request(clock))
        assert isinstance(result, PushResult) and isinstance(result.reply, Reply)
        assert result.records or result.rejected, "an authentic request gives records (or says why not)"
        for r in result.records:
            assert isinstance(r, RawRecord) and r.external_id and r.source == self.connector_name
            json.dumps(r.payload, default=_json_default)

    def test_tampered_body_is_refused(self) -> None:
        import dataclasses

        import pytest

        from hub.errors import SignatureError

        source, clock = self._source()
        request = self.signed_request(clock)
        tampered = dataclasses.replace(request, body=request.body + b" ")
        with pytest.raises(SignatureError) as info:
            source.handle(tampered)
        assert_no_secrets(str(info.value), self.secrets(), "the SignatureError")

    def test_unsigned_request_is_refused(self) -> None:
        import dataclasses

        import pytest

        from hub.errors import SignatureError

        source, clock = self._source()
        request = self.signed_request(clock)
        bare = dataclasses.replace(
            request,
            headers={k: v for k, v in request.headers.items() if k in ("content-type", "content-length")},
            query={},
        )
        with pytest.raises(SignatureError):
            source.handle(bare)


Handler = Callable[["httpx.Request"], "httpx.Response"]


class DestinationConformance(ConnectorConformance):
    """Checks for an HTTP destination against a faked platform: the suite injects an
    ``httpx.MockTransport`` per scenario through :meth:`make_context`. Implement :meth:`accept`
    (the platform's success answer to one request); set ``message`` when the default one does not
    suit (recipients, template)."""

    message: ClassVar[OutboundMessage | None] = None

    def accept(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError("return the platform's success answer to request")

    def is_auth_call(self, request: httpx.Request) -> bool:
        """Whether ``request`` fetches a credential rather than sending (the failure scenarios let
        those through). Default: a path naming a token, without the message's idempotency header."""
        from hub.sdk.http import IDEMPOTENCY_HEADER

        return "token" in request.url.path.lower() and IDEMPOTENCY_HEADER not in request.headers

    def outbound(self) -> OutboundMessage:
        from hub.sdk.connector import Button, OutboundMessage

        return self.message or OutboundMessage(
            key="conformance-1",
            title="差评提醒",
            body="门店 S001 收到 1 星评价：排队太久",
            to=["u1"],
            buttons=[Button("处理", "https://cx.example.com/cases/1")],
        )

    def _send_through(self, handler: Handler) -> Any:
        import httpx

        from hub.sdk.connector import ConnectorContext

        base = self.make_context()
        context = ConnectorContext(
            clock=base.clock, transport=httpx.MockTransport(handler), kv=base.kv, secret_key=base.secret_key
        )
        destination = self.make_connector(context)
        try:
            assert isinstance(destination, _destination_type())
            return destination.send(self.outbound())
        finally:
            destination.close()

    def _failing(self, status: int, headers: dict[str, str] | None = None) -> Handler:
        import httpx

        # an access-token fetch succeeds, so the failure hits the send itself
        def handler(request: httpx.Request) -> httpx.Response:
            accepted = self.accept(request)
            if self.is_auth_call(request):
                return accepted
            return httpx.Response(status, headers=headers or {}, json={"error": "conformance"})

        return handler

    def _raises(self, handler: Handler, expected: type[Exception]) -> Exception:
        import pytest

        with pytest.raises(expected) as info:
            self._send_through(handler)
        assert_no_secrets(str(info.value), self.secrets(), f"the {type(info.value).__name__}")
        return info.value

    def test_destination_declared(self) -> None:
        assert "destination" in self.connector_class().roles()

    def test_success_returns_a_receipt(self) -> None:
        from hub.sdk.connector import Receipt

        receipt = self._send_through(self.accept)
        assert isinstance(receipt, Receipt)
        assert_no_secrets(receipt.detail, self.secrets(), "the receipt")

    def test_server_errors_are_retriable(self) -> None:
        from hub.errors import RetriableError

        for status in (500, 502, 503):
            self._raises(self._failing(status), RetriableError)

    def test_throttling_is_retriable(self) -> None:
        from hub.errors import RetriableError

        err = self._raises(self._failing(429, {"retry-after": "7"}), RetriableError)
        assert isinstance(err, RetriableError)
        assert err.retry_after in (None, 7.0), "Retry-After, when passed on, is in seconds"

    def test_connection_failures_are_retriable(self) -> None:
        import httpx

        from hub.errors import RetriableError

        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        def slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out", request=request)

        self._raises(down, RetriableError)
        self._raises(slow, RetriableError)

    def test_refused_requests_are_connector_errors(self) -> None:
        # a 4xx is the platform's "no": permanent, or retriable when it means "token expired";
        # never a raw httpx / KeyError escaping the connector
        from hub.errors import ConnectorError

        for status in (400, 403, 404):
            self._raises(self._failing(status), ConnectorError)


def _destination_type() -> type[Destination]:
    from hub.sdk.connector import Destination

    return Destination


__all__ = [
    "ConnectorConformance",
    "DestinationConformance",
    "FakeClock",
    "PullSourceConformance",
    "PushSourceConformance",
    "assert_no_secrets",
    "secret_values",
]
