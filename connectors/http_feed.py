"""Declarative HTTP pull source (review feeds and any paged JSON API), with httpx + tenacity.

Everything is options, no Python:

- ``base_url`` + ``path``, ``method`` and how parameters travel (``body: query | form | json``);
- ``auth`` (bearer / header / query token) or ``sign`` (a named strategy: ``top``, ``jd``,
  ``dianping``; see :mod:`hub.sdk.signing`);
- ``pagination``: ``page`` number, ``offset``, ``cursor`` token or ``next_link``; ``max_page``
  (a platform's page limit: the time window is split in halves when it is reached);
- ``records``: JMESPath selecting the list of records; ``id``: JMESPath of each record's id;
- ``window``: incremental time windows (``start_param`` / ``end_param``) sliced to ``span``, with
  ``overlap`` re-read at each run (dedup absorbs it), ``lag`` and ``max_age`` (Taobao: 180 days);
- ``rate_limit``: at most ``limit`` requests per ``per_seconds`` for this source;
- retries (tenacity) on timeouts, transport errors, 429 and 5xx, honouring ``Retry-After``;
- ``errors``: vendor codes inside HTTP 200 classified with the outcomes every connector uses
  (:class:`hub.sdk.policy.ErrorTable`): ``token`` (the credentials or session were refused: fatal
  here, with a clear message, since a seller's authorisation cannot be refreshed by the hub),
  ``throttle`` (back off) or ``retry``; any other non-OK code is permanent. The older names
  ``auth``, ``throttled`` and ``transient`` are still accepted.

State: ``{"until": <end of the last completed window>}``, committed with the last page of a window.
A crash re-reads at most the window in progress.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator

from hub.errors import ConfigError, PermanentError, RetriableError, Throttled
from hub.redact import redact
from hub.sdk.connector import Batch, ConnectorOptions, PullSource, RawRecord, Rejected
from hub.sdk.durations import parse_duration
from hub.sdk.policy import ErrorTable, parse_retry_after
from hub.sdk.signing import SIGNERS

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState
from hub.sdk.expressions import compile_expression


def _duration(value: Any) -> float:
    return parse_duration(value)


class Pagination(ConnectorOptions):
    """How to get the next page."""

    type: Literal["none", "page", "offset", "cursor", "next_link"] = "page"
    page_param: str = "page"
    first_page: int = 1
    size_param: str | None = "page_size"
    size: int = Field(default=50, ge=1, le=10_000)
    max_page: int | None = Field(default=None, ge=1, description="platform page limit; the window is split")
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor_path: str | None = Field(default=None, description="JMESPath of the next cursor token")
    next_path: str | None = Field(default=None, description="JMESPath of the next page's URL")
    has_more_path: str | None = Field(default=None, description="JMESPath of a has-more flag")
    total_path: str | None = None


class Window(ConnectorOptions):
    """Incremental time windows ``[start, end)`` sent as two parameters."""

    start_param: str
    end_param: str
    format: str = Field(default="%Y-%m-%d %H:%M:%S", description="strftime, or epoch / epoch_ms / iso")
    timezone: str = "Asia/Shanghai"
    initial: float = Field(default=7 * 86400, description="how far back the first run reads")
    span: float = Field(default=86400, gt=0, description="longest window of one request series")
    overlap: float = Field(default=600, ge=0, description="re-read before the committed end")
    lag: float = Field(default=60, ge=0, description="stay this far behind now (late indexing)")
    max_age: float | None = Field(default=None, description="the platform serves only this far back")
    min_span: float = Field(default=1, gt=0, description="never split a full window below this")

    @field_validator("initial", "span", "overlap", "lag", "max_age", "min_span", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float | None:
        return None if v is None else _duration(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        ZoneInfo(v)
        return v


class ErrorRules(ConnectorOptions):
    """Vendor error codes inside HTTP 200, by outcome (the vocabulary of :class:`ErrorTable`).
    Entries match the code or the sub-code; ``x*`` is a prefix. Unlisted codes are permanent."""

    code_path: str | None = None
    sub_code_path: str | None = None
    message_path: str | None = None
    ok: list[str] = Field(default_factory=list, description="codes that mean success")
    token: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("token", "auth"),
        description="credentials or session refused (fatal, clear message); also accepted as `auth`",
    )
    throttle: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("throttle", "throttled"),
        description="too fast: back off; also accepted as `throttled`",
    )
    retry: list[str] = Field(
        default_factory=list,
        validation_alias=AliasChoices("retry", "transient"),
        description="try again; also accepted as `transient`",
    )
    retry_after_path: str | None = None

    @field_validator("ok", "token", "throttle", "retry", mode="before")
    @classmethod
    def _strs(cls, v: Any) -> list[str]:
        return [str(x) for x in v or []]

    def table(self) -> ErrorTable:
        """These rules as an error table (unlisted codes: permanent)."""
        return ErrorTable(
            ok=frozenset(self.ok),
            token=frozenset(self.token),
            throttle=frozenset(self.throttle),
            retry=frozenset(self.retry),
            default="permanent",
        )


class AuthOptions(ConnectorOptions):
    """A static credential: ``bearer`` (Authorization header), ``header`` or ``query`` parameter."""

    type: Literal["none", "bearer", "header", "query"] = "none"
    name: str = "Authorization"
    token: SecretStr | None = None


class FanOut(ConnectorOptions):
    """Read the feed once per value of one parameter (several shops...)."""

    param: str
    values: list[str]


class RateLimitOptions(ConnectorOptions):
    """At most ``limit`` requests per ``per_seconds`` from this source."""

    limit: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class HttpFeedOptions(ConnectorOptions):
    """Options of the ``http_feed`` source (see the module docstring and docs/pull.md)."""

    base_url: str
    path: str = ""
    method: Literal["GET", "POST"] = "GET"
    body: Literal["query", "form", "json"] = "query"
    params: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthOptions = Field(default_factory=AuthOptions)
    sign: str = Field(default="none", description="signing strategy: none, top, jd, dianping")
    app_key: str | None = None
    app_secret: SecretStr | None = None
    session: SecretStr | None = Field(default=None, description="seller session / access token")
    sign_method: str = "md5"
    records: str = Field(description="JMESPath of the list of records in a response")
    id: str = Field(description="JMESPath of a record's unique id")
    pagination: Pagination = Field(default_factory=Pagination)
    window: Window | None = None
    fan_out: FanOut | None = None
    errors: ErrorRules = Field(default_factory=ErrorRules)
    rate_limit: RateLimitOptions | None = None
    retries: int = Field(default=5, ge=1, le=20)
    backoff_base: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=60.0, ge=0)
    max_retry_after: float = Field(default=300.0, ge=0, description="longer waits end the run instead")
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> HttpFeedOptions:
        if self.sign not in SIGNERS:
            raise ValueError(f"sign: unknown strategy {self.sign!r}; known: {sorted(SIGNERS)}")
        if self.sign != "none" and (not self.app_key or self.app_secret is None):
            raise ValueError(f"sign {self.sign!r} needs app_key and app_secret")
        p = self.pagination
        if p.type == "cursor" and not p.cursor_path:
            raise ValueError("pagination.cursor_path: required for cursor pagination")
        if p.type == "next_link" and not p.next_path:
            raise ValueError("pagination.next_path: required for next_link pagination")
        for name in ("records", "id"):
            try:
                compile_expression(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return self


class BlockedError(Throttled):
    """The platform blocks us for longer than ``max_retry_after``: this run ends (its windows so far
    are committed) and a later run resumes; retrying now would only extend the ban."""


class _PageLimit(Exception):
    """The platform's page limit was reached while more pages remain."""


class HttpFeedSource(PullSource):
    """Any paged JSON API read in incremental time windows: review feeds, ticket systems, CRMs with a
    REST API. Signing, pagination, record selection and error codes are all options."""

    kind = "http_feed"
    title = "Paged JSON API (time windows, page/offset/cursor/next-link, signed, rate limited)"
    Options: ClassVar[type[ConnectorOptions]] = HttpFeedOptions
    options: HttpFeedOptions

    #: injectable for tests: how to wait, and a monotonic clock for the rate limit
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    monotonic: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, name: str, options: ConnectorOptions, context: Any = None):
        super().__init__(name, self.build_options(options), context)
        o = self.options
        self._records = compile_expression(o.records)
        self._id = compile_expression(o.id)
        self._paths = {
            k: compile_expression(v)
            for k, v in {
                "cursor": o.pagination.cursor_path,
                "next": o.pagination.next_path,
                "has_more": o.pagination.has_more_path,
                "total": o.pagination.total_path,
                "code": o.errors.code_path,
                "sub_code": o.errors.sub_code_path,
                "message": o.errors.message_path,
                "retry_after": o.errors.retry_after_path,
            }.items()
            if v
        }
        self._errors = o.errors.table()
        self._client: httpx.Client | None = None
        self._next_slot = 0.0
        self.requests = 0

    @classmethod
    def build_options(cls, options: ConnectorOptions) -> HttpFeedOptions:
        """Presets override this to turn their short options into full feed options."""
        assert isinstance(options, HttpFeedOptions)
        return options

    # ------------------------------------------------------------ HTTP

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = self.context.http_client(self.options.base_url, timeout=self.options.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _throttle(self) -> None:
        rl = self.options.rate_limit
        if rl is None:
            return
        interval = rl.per_seconds / rl.limit
        now = self.monotonic()
        if now < self._next_slot:
            self.sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = now + interval

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, RetriableError) and exc.retry_after is not None:
            return exc.retry_after
        return float(min(self.options.backoff_max, self.options.backoff_base * 2 ** (rs.attempt_number - 1)))

    def call(self, params: dict[str, Any], url: str | None = None) -> Any:
        """One signed request with retries; returns the parsed JSON body."""
        from tenacity import Retrying, retry_if_exception_type, retry_if_not_exception_type, stop_after_attempt

        retrying = Retrying(
            stop=stop_after_attempt(self.options.retries),
            wait=self._wait,
            retry=retry_if_exception_type(RetriableError) & retry_if_not_exception_type(BlockedError),
            sleep=self.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._request(params, url)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, params: dict[str, Any], url: str | None) -> Any:
        import httpx

        o = self.options
        self._throttle()
        headers = dict(o.headers)
        if url is not None:  # next_link: the platform built the whole URL
            req_params: dict[str, Any] = {}
            target = url
        else:
            req_params = SIGNERS[o.sign](o, dict(params), self.context.clock())
            target = o.path
        if o.auth.type != "none" and o.auth.token is not None:
            token = o.auth.token.get_secret_value()
            if o.auth.type == "bearer":
                headers["Authorization"] = f"Bearer {token}"
            elif o.auth.type == "header":
                headers[o.auth.name] = token
            else:
                req_params[o.auth.name] = token
        kwargs: dict[str, Any] = {"headers": headers}
        if o.method == "GET" or o.body == "query":
            kwargs["params"] = req_params
        elif o.body == "form":
            kwargs["data"] = req_params
        else:
            kwargs["json"] = req_params
        self.requests += 1
        try:
            resp = self.client.request(o.method, target, **kwargs)
        except httpx.TimeoutException:
            raise RetriableError(f"{redact(o.base_url + o.path)}: timed out", target=self.name) from None
        except httpx.TransportError as exc:
            raise RetriableError(f"{redact(o.base_url + o.path)}: {type(exc).__name__}", target=self.name) from None
        return self._check(resp)

    def _check(self, resp: httpx.Response) -> Any:
        where = redact(f"{self.options.base_url}{self.options.path}")  # a base URL may carry credentials
        if resp.status_code == 429:
            ra = parse_retry_after(resp.headers.get("retry-after"), self.context.clock())
            self._raise_throttled(f"{where}: throttled (HTTP 429)", ra, 429)
        if resp.status_code >= 500:
            raise RetriableError(
                f"{where}: server error",
                target=self.name,
                code=resp.status_code,
                retry_after=parse_retry_after(resp.headers.get("retry-after"), self.context.clock()),
            )
        if resp.status_code in (401, 403):
            raise PermanentError(
                f"{where}: credentials rejected (HTTP {resp.status_code}); check the token / app_key / app_secret",
                target=self.name,
            )
        if resp.status_code >= 400:
            raise PermanentError(f"{where}: request refused (HTTP {resp.status_code})", target=self.name)
        try:
            body = resp.json()
        except ValueError:
            # a gateway's HTML error page in a 200: transient more often than not
            raise RetriableError(f"{where}: the response is not JSON", target=self.name) from None
        self._vendor_error(body)
        return body

    def _raise_throttled(self, message: str, retry_after: float | None, code: Any) -> None:
        if retry_after is not None and retry_after > self.options.max_retry_after:
            # a long ban: end this run (state is committed); the next scheduled run resumes
            raise BlockedError(
                message + f"; blocked for {retry_after:.0f}s", target=self.name, code=code, retry_after=retry_after
            ) from None
        raise Throttled(message, target=self.name, code=code, retry_after=retry_after)

    def _vendor_error(self, body: Any) -> None:
        code_get = self._paths.get("code")
        if code_get is None:
            return
        code = code_get(body)
        if code is None:
            return
        sub = self._paths["sub_code"](body) if "sub_code" in self._paths else None
        outcome = self._errors.outcome(str(code), None if sub is None else str(sub))
        if outcome == "ok":
            return
        msg = self._paths["message"](body) if "message" in self._paths else None
        detail = f"code {code}" + (f"/{sub}" if sub is not None else "") + (f": {msg}" if msg else "")
        if outcome == "token":  # a seller's session / key cannot be refreshed here: fatal
            raise PermanentError(
                f"authorisation failed ({detail}); check app_key, app_secret and the session / access token "
                "(a seller's authorisation expires and must be renewed)",
                target=self.name,
            )
        if outcome == "throttle":
            ra = None
            if "retry_after" in self._paths:
                v = self._paths["retry_after"](body)
                ra = float(v) if isinstance(v, int | float) or (isinstance(v, str) and v.isdigit()) else None
            if ra is None and msg:
                m = re.search(r"(\d+)\s*(?:more\s*)?seconds?", str(msg))
                ra = float(m.group(1)) if m else None
            self._raise_throttled(f"throttled by the platform ({detail})", ra, code)
        if outcome == "retry":
            raise RetriableError(f"platform error ({detail})", target=self.name, code=str(code))
        raise PermanentError(f"the platform refused the request ({detail})", target=self.name)

    # ------------------------------------------------------------ windows

    def _fmt(self, when: datetime) -> Any:
        w = self.options.window
        assert w is not None
        if w.format == "epoch":
            return int(when.timestamp())
        if w.format == "epoch_ms":
            return int(when.timestamp() * 1000)
        local = when.astimezone(ZoneInfo(w.timezone))
        if w.format == "iso":
            return local.isoformat()
        return local.strftime(w.format)

    def windows(self, state: dict[str, Any] | None, *, full: bool = False) -> list[tuple[datetime, datetime]]:
        """The windows of one pass: from the committed end (minus overlap) to now - lag, sliced."""
        w = self.options.window
        assert w is not None
        now = self.context.clock().astimezone(UTC)
        end = now - timedelta(seconds=w.lag)
        until = None if full or not state else state.get("until")
        if until:
            start = datetime.fromisoformat(until) - timedelta(seconds=w.overlap)
        else:
            start = end - timedelta(seconds=w.initial)
        if w.max_age is not None:
            # a minute of margin: the platform measures its own "180 days" with its own clock
            start = max(start, now - timedelta(seconds=w.max_age) + timedelta(minutes=1))
        out = []
        while start < end:
            stop = min(end, start + timedelta(seconds=w.span))
            out.append((start, stop))
            start = stop
        return out

    # ------------------------------------------------------------ reading

    def read(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[Batch]:
        """Pages of every window after the committed one; the last page of a window commits its end."""
        fan = self.options.fan_out
        values: list[str | None] = list(fan.values) if fan else [None]
        if self.options.window is None:
            for v in values:
                yield from self._pages({}, v, state or {})
            return
        committed = dict(state or {})
        for start, end in self.windows(state, full=full):
            for i, v in enumerate(values):
                last = i == len(values) - 1
                yield from self._window(start, end, v, committed)
                if last:
                    committed = {"until": end.isoformat()}
                    yield Batch([], dict(committed))

    def _window(self, start: datetime, end: datetime, fan_value: str | None, state: dict[str, Any]) -> Iterator[Batch]:
        w = self.options.window
        assert w is not None
        params = {w.start_param: self._fmt(start), w.end_param: self._fmt(end)}
        try:
            yield from self._pages(params, fan_value, state)
        except _PageLimit:
            if (end - start).total_seconds() / 2 < w.min_span:
                raise PermanentError(
                    f"more than {self.options.pagination.max_page} pages between {start} and {end} even after "
                    "slicing the window; lower window.min_span or raise the page size",
                    target=self.name,
                ) from None
            mid = start + (end - start) / 2
            yield from self._window(start, mid, fan_value, state)
            yield from self._window(mid, end, fan_value, state)

    def _pages(self, base: dict[str, Any], fan_value: str | None, state: dict[str, Any]) -> Iterator[Batch]:
        o = self.options
        p = o.pagination
        params = {**o.params, **base}
        if o.fan_out and fan_value is not None:
            params[o.fan_out.param] = fan_value
        if p.size_param and p.type in ("page", "offset", "cursor"):
            params[p.size_param] = p.size
        page, offset, token, url = p.first_page, 0, None, None
        while True:
            if p.type == "page":
                if p.max_page is not None and page > p.max_page:
                    raise _PageLimit()
                params[p.page_param] = page
            elif p.type == "offset":
                params[p.offset_param] = offset
            elif p.type == "cursor" and token is not None:
                params[p.cursor_param] = token
            body = self.call(params, url)
            raw = self._records(body)
            items = raw if isinstance(raw, list) else ([] if raw is None else [raw])
            yield self._batch(items, fan_value, state)
            if p.type == "none":
                return
            more: bool
            if "has_more" in self._paths:
                more = bool(self._paths["has_more"](body))
            elif "total" in self._paths and p.type in ("page", "offset"):
                total = self._paths["total"](body)
                seen = (page - p.first_page + 1) * p.size if p.type == "page" else offset + len(items)
                more = total is not None and seen < int(total)
            else:
                more = len(items) >= p.size
            if p.type == "cursor":
                token = self._paths["cursor"](body)
                more = more and bool(token) if "has_more" in self._paths else bool(token)
            elif p.type == "next_link":
                url = self._paths["next"](body)
                more = bool(url)
            if not more or (not items and p.type in ("page", "offset")):
                return
            page += 1
            offset += len(items)

    def _batch(self, items: list[Any], fan_value: str | None, state: dict[str, Any]) -> Batch:
        records: list[RawRecord] = []
        rejected: list[Rejected] = []
        for item in items:
            if isinstance(item, dict) and self.options.fan_out and fan_value is not None:
                item.setdefault(self.options.fan_out.param, fan_value)
            ext = self._id(item) if isinstance(item, dict) else None
            if ext is None or ext == "" or isinstance(ext, dict | list):
                rejected.append(Rejected(None, item, f"id {self.options.id!r} gives no usable id"))
                continue
            records.append(RawRecord(self.name, str(ext), item))
        return Batch(records, dict(state), rejected)


def require(value: SecretStr | str | None, what: str, source: str) -> str:
    """The plain value of a required credential, or a ``ConfigError`` naming it (never its value)."""
    if value is None:
        raise ConfigError(f"source {source!r}: {what} is required", key=f"options.{what}")
    return value.get_secret_value() if isinstance(value, SecretStr) else value


__all__ = [
    "BlockedError",
    "ErrorRules",
    "HttpFeedOptions",
    "HttpFeedSource",
    "Pagination",
    "Window",
]
