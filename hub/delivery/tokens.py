"""Access tokens shared by every process through the store, refreshed by one process at a time.

WeChat's ``stable_token``, WeCom's ``gettoken``, DingTalk's ``gettoken`` and Feishu's
``tenant_access_token`` all live about two hours. Each process fetching its own is wasteful and,
for WeChat's classic ``cgi-bin/token``, destructive (every fetch invalidates the previous token).
:class:`TokenCache` keeps the token in the store's key-value table and takes the store's lock
(``Store.lock``: a PostgreSQL advisory lock) around a refresh, re-reading inside the lock, so when
several workers find it stale at once exactly one of them calls the platform.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from hub.connector import Clock, KeyValueStore, utcnow

log = logging.getLogger("cxhub.delivery")

#: a fetcher returns the token and its lifetime in seconds; ``force`` asks for a new one
Fetcher = Callable[[bool], tuple[str, float]]


class TokenCache:
    """One named token in the shared key-value store.

    ``refresh_margin`` seconds before expiry the token counts as stale and is refreshed, so a send
    never starts with a token about to expire.
    """

    def __init__(
        self, kv: KeyValueStore, name: str, fetch: Fetcher, *, clock: Clock = utcnow, refresh_margin: float = 300.0
    ):
        self.kv = kv
        self.key = f"token:{name}"
        self.fetch = fetch
        self.clock = clock
        self.refresh_margin = refresh_margin

    def _fresh(self) -> str | None:
        item = self.kv.get(self.key)
        if item is None:
            return None
        value, expires_at = item
        if expires_at is not None and expires_at - timedelta(seconds=self.refresh_margin) <= self.clock():
            return None
        return value

    def get(self) -> str:
        """A valid token: from the store, or fetched by this process under the lock."""
        token = self._fresh()
        if token is not None:
            return token
        with self.kv.lock(self.key):
            token = self._fresh()  # another process may have refreshed while we waited
            if token is not None:
                return token
            return self._store(*self.fetch(False))

    def invalidate(self, rejected: str) -> str:
        """The platform refused ``rejected``: fetch a new token, unless another process already
        replaced it (then use that one). Returns the token to retry with."""
        with self.kv.lock(self.key):
            item = self.kv.get(self.key)
            if item is not None and item[0] != rejected:
                return item[0]
            log.info("%s refused by the platform; refreshing it", self.key)
            return self._store(*self.fetch(True))

    def _store(self, token: str, expires_in: float) -> str:
        expires_at: datetime = self.clock() + timedelta(seconds=expires_in)
        self.kv.put(self.key, token, expires_at)
        return token


__all__ = ["Fetcher", "TokenCache"]
