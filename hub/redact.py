"""Credentials out of text a person or a log reader sees: one redaction for config output, error
texts, outbox receipts and log lines.

Platforms put credentials in their URLs (DingTalk's ``access_token`` and ``sign`` query, WeCom's
robot ``key``, Feishu's ``/open-apis/bot/v2/hook/<id>``), and HTTP libraries quote whole URLs in
their log lines and exception texts, so redacting by shape is the only defence that covers text
cxhub did not write itself. On top of the shapes, the secret values of the loaded config are
remembered (:func:`remember`) and masked wherever they appear, plain or URL-encoded.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

#: query / form parameter names (lower case, also as a suffix: ``app_secret``, ``refresh_token``)
#: whose values are credentials
_SECRET_PARAM = (
    r"[a-z0-9_.\-]*(?:token|secret|key|sign|signature|password|passwd|pwd|session|ticket|credential|credentials)"  # noqa: S105 (names, not a secret)
)
_QUERY = re.compile(rf"(?i)(?<![a-z0-9_.\-])({_SECRET_PARAM}=)([^&#\s\"'<>,;)\]}}]*)")
#: ``scheme://user:password@host``: the password goes, the user stays (it names the account)
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^/\s:@\"'<>]*:)([^@/\s\"'<>]+)(@)")
#: path segments that are credentials by themselves
_SECRET_PATHS = (
    re.compile(r"(/open-apis/bot/v2/hook/)([^/?#\s\"'<>]+)"),  # Feishu / Lark custom bot
    re.compile(r"(/cgi-bin/webhook/send/)([^/?#\s\"'<>]+)"),  # WeCom robot key as a path (proxies)
)
#: secrets shorter than this are not searched for as plain text: they would mask ordinary words
_MIN_KNOWN = 4

_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def remember(values: Iterable[str]) -> None:
    """Mask these secret values (and their URL-encoded forms) wherever :func:`redact` sees them."""
    global _known_pattern
    with _lock:
        added = False
        for value in values:
            if not isinstance(value, str) or len(value) < _MIN_KNOWN:
                continue
            for form in (value, quote(value, safe=""), quote_plus(value), quote(value)):
                if form not in _known:
                    _known.add(form)
                    added = True
        if added:
            # longest first, so that a secret containing another is masked whole
            _known_pattern = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def forget_all() -> None:
    """Drop every remembered value (tests)."""
    global _known_pattern
    with _lock:
        _known.clear()
        _known_pattern = None


def redact(text: str) -> str:
    """``text`` with credentials masked: remembered secret values, URL passwords, secret-named
    query parameters (``access_token=``, ``key=``, ``sign=``...) and credential path segments."""
    if not text:
        return text
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "=" in text:
        text = _QUERY.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), text)
    if "://" in text:
        text = _USERINFO.sub(rf"\g<1>{MASK}\g<3>", text)
    if "/" in text:
        for path in _SECRET_PATHS:
            text = path.sub(rf"\g<1>{MASK}", text)
    return text


def redact_data(data: object) -> object:
    """:func:`redact` applied to every string inside JSON-like data (dicts, lists)."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data


class RedactingFilter(logging.Filter):
    """A handler filter that redacts every record before it is formatted: the message with its
    args merged, the exception text and the stack. ``also``: a further mask applied after it
    (the CLI passes :func:`hub.privacy.mask_text`, for the phone numbers in log lines)."""

    def __init__(self, *, also: Callable[[str], str] | None = None):
        super().__init__()
        self.also = also
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is rather than lose the record
            message = f"{record.msg} {record.args}"
        record.msg = self._clean(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        return True

    def _clean(self, text: str) -> str:
        text = redact(text)
        return self.also(text) if self.also is not None else text


def install(handler: logging.Handler, *, also: Callable[[str], str] | None = None) -> None:
    """Put a :class:`RedactingFilter` on ``handler`` (once)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter(also=also))


__all__ = ["MASK", "RedactingFilter", "forget_all", "install", "redact", "redact_data", "remember"]
