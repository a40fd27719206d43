"""Access tokens shared by every process through the store, refreshed by one process at a time.

WeChat's ``stable_token``, WeCom's ``gettoken``, DingTalk's ``gettoken`` and Feishu's
``tenant_access_token`` all live about two hours. Each process fetching its own is wasteful and,
for WeChat's classic ``cgi-bin/token``, destructive (every fetch invalidates the previous token).
:class:`TokenCache` keeps the token in the store's key-value table and takes the store's lock
(``Store.lock``: a PostgreSQL advisory lock) around a refresh, re-reading inside the lock, so when
several workers find it stale at once exactly one of them calls the platform.

Each cache also keeps the token in memory and re-reads the store only every ``recheck_seconds``
(default 60) or when the token nears expiry: reading the store on every send was a database round
trip per message. A token replaced meanwhile by another process is still found: the platform
refuses the old one and :meth:`TokenCache.invalidate` picks up the stored replacement (DingTalk,
WeCom and Feishu return the same token while it is valid; WeChat's ``stable_token`` keeps the
previous token valid for five minutes after a forced refresh, longer than ``recheck_seconds``).

:meth:`TokenCache.call` is the one "call with the token; when the platform refuses it, refresh and
call once more" every token-based destination uses, and :func:`token_answer` reads a platform's
token answer (errors classified by an :class:`~hub.sdk.policy.ErrorTable`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from hub.errors import RetriableError, TokenExpired
from hub.sdk.connector import Clock, KeyValueStore, utcnow
from hub.sdk.policy import ErrorTable

log = logging.getLogger("cxhub.delivery")

#: a fetcher returns the token and its lifetime in seconds; ``force`` asks for a new one
Fetcher = Callable[[bool], tuple[str, float]]
T = TypeVar("T")


class TokenCache:
    """One named token in the shared key-value store.

    ``refresh_margin`` seconds before expiry the token counts as stale and is refreshed, so a send
    never starts with a token about to expire.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        name: str,
        fetch: Fetcher,
        *,
        clock: Clock = utcnow,
        refresh_margin: float = 300.0,
        recheck_seconds: float = 60.0,
    ):
        self.kv = kv
        self.key = f"token:{name}"
        self.fetch = fetch
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.recheck = timedelta(seconds=recheck_seconds)
        # (token, expires_at, read_at): replaced whole, so threads never see half an update
        self._memory: tuple[str, datetime | None, datetime] | None = None
        # threads of this process queue here, so only one of them waits on the store's lock (a
        # blocked advisory lock holds a pooled connection: a dozen waiters could drain the pool)
        self._local = threading.Lock()

    def _usable(self, expires_at: datetime | None, now: datetime) -> bool:
        return expires_at is None or expires_at - timedelta(seconds=self.refresh_margin) > now

    def _fresh(self) -> str | None:
        now = self.clock()
        item = self.kv.get(self.key)
        if item is None:
            return None
        value, expires_at = item
        if not self._usable(expires_at, now):
            return None
        self._memory = (value, expires_at, now)
        return value

    def get(self) -> str:
        """A valid token: from memory, from the store, or fetched by this process under the lock."""
        mem = self._memory
        if mem is not None:
            now = self.clock()
            if self._usable(mem[1], now) and now - mem[2] < self.recheck:
                return mem[0]
        token = self._fresh()
        if token is not None:
            return token
        with self._local:
            mem = self._memory
            if mem is not None and self._usable(mem[1], self.clock()):
                return mem[0]  # another thread refreshed it while this one waited
            with self.kv.lock(self.key):
                token = self._fresh()  # another process may have refreshed while we waited
                if token is not None:
                    return token
                return self._store(*self.fetch(False))

    def call(self, send: Callable[[str], T]) -> T:
        """``send(token)`` with a valid token. When the platform refuses the token (``send`` raises
        :class:`~hub.errors.TokenExpired`), the token is refreshed (:meth:`invalidate`) and ``send``
        called once more; a second refusal propagates (a retriable error for the worker)."""
        token = self.get()
        try:
            return send(token)
        except TokenExpired:
            return send(self.invalidate(token))

    def invalidate(self, rejected: str) -> str:
        """The platform refused ``rejected``: fetch a new token, unless another process already
        replaced it (then use that one). Returns the token to retry with."""
        with self._local:
            mem = self._memory
            if mem is not None and mem[0] != rejected and self._usable(mem[1], self.clock()):
                return mem[0]  # another thread of this process already replaced it
            with self.kv.lock(self.key):
                item = self.kv.get(self.key)
                if item is not None and item[0] != rejected:
                    self._memory = (item[0], item[1], self.clock())
                    return item[0]
                log.info("%s refused by the platform; refreshing it", self.key)
                return self._store(*self.fetch(True))

    def _store(self, token: str, expires_in: float) -> str:
        now = self.clock()
        expires_at: datetime = now + timedelta(seconds=expires_in)
        self.kv.put(self.key, token, expires_at)
        self._memory = (token, expires_at, now)
        return token


def token_answer(
    data: Mapping[str, Any],
    errors: ErrorTable,
    *,
    target: str,
    code_field: str = "errcode",
    message_field: str = "errmsg",
    token_field: str = "access_token",  # noqa: S107 - the answer's field name, not a secret
    expires_field: str = "expires_in",
    missing_code: int = 0,
    what: str = "an access token",
) -> tuple[str, float]:
    """The token and its lifetime (seconds, 7200 when not given) from a platform's token answer.

    The answer's result code (``missing_code`` when absent) is classified by ``errors``: bad app
    key / secret or a server IP outside the allow list are ``permanent`` there (no retry fixes
    them), anything else is retried. A success code without a token is retried too.
    """
    result = int(data.get(code_field, missing_code))
    if result != 0 or not data.get(token_field):
        text = f"cannot get {what}: {data.get(message_field, '')}"
        errors.check(result, text, target=target)
        raise RetriableError(text, target=target, code=result)
    return str(data[token_field]), float(data.get(expires_field, 7200))


__all__ = ["Fetcher", "TokenCache", "token_answer"]
