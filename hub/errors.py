"""One error tree for cxhub. Every message names the thing (file:line, field, source,
destination) and never a secret.

    CxhubError
     ├── ConfigError            bad config / mapping file: names file, line and key path
     │    ├── ConfigErrors      several at once (cxhub check lists them all)
     │    └── MappingError      a mapping that does not compile (unknown field, bad expression,
     │         │                impossible coercion)
     │         └── MappingErrors  every problem of one mapping (also a ConfigErrors)
     ├── PayloadError           one inbound record or request is unusable -> quarantine / 4xx
     │    ├── RecordError       a record failed its mapping (coercion, lookup, missing field)
     │    ├── SignatureError    signature / token / timestamp check failed -> 401/403, nothing stored
     │    └── PayloadTooLarge   body over the size limit -> 413
     └── ConnectorError         talking to a platform failed
          ├── RetriableError    try again later (timeouts, 5xx)
          │    ├── Throttled    the platform said "too fast": back off the whole source / destination
          │    └── TokenExpired the access token was refused: refresh it and retry once
          └── PermanentError    will never succeed as is (bad recipient, unauthorised, bad config)

Platform result codes are classified into these with one vocabulary, the outcomes of
:class:`hub.sdk.policy.ErrorTable`: ``ok``, ``token`` (TokenExpired), ``throttle`` (Throttled),
``retry`` (RetriableError) and ``permanent`` (PermanentError).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CxhubError(Exception):
    """Root of every error cxhub raises on purpose."""


class ConfigError(CxhubError):
    """A config or mapping file is invalid. ``location`` is ``file:line`` when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, key: str | None = None):
        self.file = file
        self.line = line
        self.key = key
        self.reason = message
        super().__init__(self._render())

    @property
    def location(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or "<config>"

    def _render(self) -> str:
        where = self.location
        if self.key:
            return f"{where}: {self.key}: {self.reason}"
        return f"{where}: {self.reason}"


class ConfigErrors(ConfigError):
    """Several config errors at once (``cxhub check`` shows every one)."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("several errors", file=errors[0].file, line=errors[0].line)

    def _render(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class MappingError(ConfigError):
    """A mapping does not compile: the message names file:line and the target field."""


class MappingErrors(ConfigErrors, MappingError):
    """Every problem of one mapping: a ``ConfigErrors`` for ``cxhub check``, and still a
    ``MappingError`` for callers that catch that."""


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'email'?"`` when a choice is close to ``name`` (a typo), else ``""``.

    Appended to every "unknown ..." message, so a misspelt key, section, connector, field or
    namespace names its likely fix beside the error."""
    options = sorted({str(c) for c in choices})
    text = str(name)
    close = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
    if not close:
        # a difference of case only scores low for short names ("ID" / "id")
        close = [c for c in options if c.lower() == text.lower()][:1]
    return f"; did you mean {close[0]!r}?" if close and close[0] != text else ""


class PayloadError(CxhubError):
    """An inbound record or request cannot be used. Records go to quarantine with this reason."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        self.reason = message
        prefix = ""
        if source:
            prefix += f"source {source!r}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message)


class RecordError(PayloadError):
    """A record failed its mapping at run time (bad value, failed coercion, missing lookup)."""


class SignatureError(PayloadError):
    """Signature, token or timestamp verification failed. The request is refused, nothing stored."""

    status_code = 401


class PayloadTooLarge(PayloadError):
    """The request body is over the configured limit."""

    status_code = 413


class ConnectorError(CxhubError):
    """A call to a platform failed. ``target`` names the source or destination."""

    def __init__(self, message: str, *, target: str | None = None, code: str | int | None = None):
        self.target = target
        self.code = code
        self.reason = message
        prefix = f"{target}: " if target else ""
        suffix = f" (code {code})" if code is not None else ""
        super().__init__(prefix + message + suffix)


class RetriableError(ConnectorError):
    """Try again later; ``retry_after`` (seconds) when the platform said how long."""

    def __init__(
        self,
        message: str,
        *,
        target: str | None = None,
        code: str | int | None = None,
        retry_after: float | None = None,
    ):
        self.retry_after = retry_after
        super().__init__(message, target=target, code=code)


class PermanentError(ConnectorError):
    """Will never succeed as is: dead-letter it with this reason."""


class Throttled(RetriableError):
    """The platform refused because of its rate limit: back off the whole destination (or source)."""


class TokenExpired(RetriableError):
    """The access token was refused: refresh it (one process at a time) and retry once."""
