"""Retry policy and vendor error classification shared by every connector.

A destination raises one of these from ``send`` (the tree is :mod:`hub.errors`); the worker decides
what happens next:

    RetriableError      failed -> next attempt after exponential backoff with jitter (or the
     │                  platform's Retry-After); dead once ``max_attempts`` is reached
     ├── Throttled      the platform said "too fast": the destination's budget is blocked until
     │                  ``retry_after`` (DingTalk 130101: 10 minutes); does not use up an attempt
     └── TokenExpired   the access token was refused: refreshed and the call retried once
                        (:meth:`hub.sdk.tokens.TokenCache.call`)
    PermanentError      dead at once, with the reason (invalid recipient, not subscribed, outside
                        the 48-hour window, bad signature or credentials)

Connectors describe their platform's result codes with an :class:`ErrorTable` instead of
if-chains, so the classification of each platform is one readable table. Its outcomes are the one
vocabulary for result codes everywhere, pull sources and configurable gateways included:
``ok``, ``token``, ``throttle``, ``retry``, ``permanent``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from hub.errors import PermanentError, RetriableError, Throttled, TokenExpired
from hub.redact import redact

#: what a platform's result code means; every classification of result codes uses these names
Outcome = Literal["ok", "token", "throttle", "retry", "permanent"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "token", "throttle", "retry", "permanent")


@dataclass(frozen=True)
class ErrorTable:
    """How one platform's result codes map to outcomes; unknown non-zero codes are ``default``.

    The sets are checked in the order of :data:`OUTCOMES`. A string entry ending in ``*`` matches
    every code starting with the rest (``"isp.*"``). ``reasons`` gives a readable reason for codes
    whose platform message is unhelpful (it ends up in ``last_error`` and in ``cxhub outbox``).
    """

    ok: frozenset[str | int] = frozenset({0})
    token: frozenset[str | int] = frozenset()
    throttle: frozenset[str | int] = frozenset()
    retry: frozenset[str | int] = frozenset()
    permanent: frozenset[str | int] = frozenset()
    default: Outcome = "retry"
    reasons: Mapping[str | int, str] = field(default_factory=dict)
    #: seconds to back off after a throttle answer when the platform gives no Retry-After
    throttle_seconds: float = 60.0

    @functools.cached_property
    def _prefixes(self) -> dict[Outcome, tuple[str, ...]]:
        """The ``x*`` entries of each outcome, without the ``*`` (most tables have none)."""
        found: dict[Outcome, tuple[str, ...]] = {}
        for name in OUTCOMES:
            prefixes = tuple(e[:-1] for e in getattr(self, name) if isinstance(e, str) and e.endswith("*"))
            if prefixes:
                found[name] = prefixes
        return found

    def _matches(self, name: Outcome, code: str | int) -> bool:
        if code in getattr(self, name):
            return True
        prefixes = self._prefixes.get(name)
        return prefixes is not None and str(code).startswith(prefixes)

    def listed(self, code: str | int, sub_code: str | int | None = None) -> Outcome | None:
        """The outcome ``code`` is listed under, or None (then ``default`` applies). A ``sub_code``
        (TOP's ``isv.*`` / ``isp.*``) is matched too, except against ``ok``: whether a call
        succeeded is the main code's to say."""
        for name in OUTCOMES:
            if self._matches(name, code) or (sub_code is not None and name != "ok" and self._matches(name, sub_code)):
                return name
        return None

    def outcome(self, code: str | int, sub_code: str | int | None = None) -> Outcome:
        """The outcome of result ``code`` (and ``sub_code``, see :meth:`listed`)."""
        return self.listed(code, sub_code) or self.default

    def check(self, code: str | int, message: str, *, target: str, retry_after: float | None = None) -> None:
        """Return if ``code`` means success; otherwise raise the matching error (secret-free)."""
        outcome = self.outcome(code)
        if outcome == "ok":
            return
        reason = self.reasons.get(code)
        message = redact(message)  # platforms echo the request (its URL, its access_token) in errmsg
        text = f"{reason}: {message}" if reason else (message or "platform error")
        if outcome == "token":
            raise TokenExpired(text, target=target, code=code)
        if outcome == "throttle":
            raise Throttled(text, target=target, code=code, retry_after=retry_after or self.throttle_seconds)
        if outcome == "permanent":
            raise PermanentError(text, target=target, code=code)
        raise RetriableError(text, target=target, code=code, retry_after=retry_after)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter (tenacity's ``wait_exponential_jitter``).

    Attempt n waits ``initial * 2**(n-1)`` seconds plus up to ``jitter`` random seconds (so workers
    that failed together do not retry together), capped at ``max_delay``; a platform's Retry-After
    is honoured as the minimum. After ``max_attempts``
    failed attempts the message is dead (``cxhub outbox retry`` brings it back).
    """

    initial: float = 5.0
    max_delay: float = 3600.0
    max_attempts: int = 10
    jitter: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        from tenacity import RetryCallState, wait_exponential_jitter

        wait = wait_exponential_jitter(multiplier=self.initial, max=self.max_delay, jitter=self.jitter)
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(attempt, 1)
        seconds = float(wait(state))
        if retry_after is not None:
            seconds = max(seconds, float(retry_after))
        return seconds

    def next_attempt(self, now: datetime, attempt: int, retry_after: float | None = None) -> datetime:
        """When to try again after failed attempt ``attempt``."""
        return now + timedelta(seconds=self.delay(attempt, retry_after))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None.

    An HTTP date needs ``now`` (the caller's clock) to become seconds; without it the date is
    ignored. A date without a zone is GMT, as HTTP dates are.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if now is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


__all__ = ["OUTCOMES", "ErrorTable", "Outcome", "RetryPolicy", "Throttled", "TokenExpired", "parse_retry_after"]
