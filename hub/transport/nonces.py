"""The receivers' replay protection kept in the store, shared by every process on it.

A key is the sha256 of (source, timestamp, nonce, signature); its row holds the digest of the body
that came with it until ``expires_at``. One statement claims a key: it inserts the row, or takes
over an expired one; when neither happens the key is live and the stored digest decides (the same
body again is a platform retry; another body is a replay and is refused).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from hub.errors import RetriableError
from hub.store import Store
from hub.store.schema import push_nonces

log = logging.getLogger("cxhub.web")

#: every this many claims, a process deletes the expired rows
SWEEP_EVERY = 1000


class StoreNonces:
    """:class:`~hub.sdk.connector.NonceStore` on the ``push_nonces`` table."""

    async def claim_async(self, key: str, digest: bytes, ttl: float) -> bool:
        return await asyncio.to_thread(self.claim, key, digest, ttl)

    def __init__(self, store: Store):
        self.store = store
        self._claims = itertools.count(1)

    def claim(self, key: str, digest: bytes, ttl: float) -> bool:
        hashed = hashlib.sha256(key.encode("utf-8")).hexdigest()
        want = digest.hex()[:32]
        now = self.store.clock()
        mod = postgresql if self.store.dialect == "postgresql" else sqlite
        stmt = mod.insert(push_nonces).values(key=hashed, digest=want, expires_at=now + timedelta(seconds=ttl))
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"digest": stmt.excluded.digest, "expires_at": stmt.excluded.expires_at},
            where=push_nonces.c.expires_at <= now,
        ).returning(push_nonces.c.key)
        try:
            with self.store.begin() as conn:
                if conn.execute(stmt).first() is not None:
                    fresh = True
                else:
                    seen = conn.execute(select(push_nonces.c.digest).where(push_nonces.c.key == hashed)).scalar()
                    fresh = seen is None or hmac.compare_digest(seen, want)
                if next(self._claims) % SWEEP_EVERY == 0:
                    conn.execute(delete(push_nonces).where(push_nonces.c.expires_at <= now))
        except DBAPIError as exc:
            log.warning("nonce check: the store is unreachable (%s)", type(exc).__name__)
            raise RetriableError("the replay check cannot reach the store; try again") from None
        return fresh
