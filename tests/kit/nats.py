"""The NATS JetStream server of cxhub's own tests (127.0.0.1:4222, see README 'Services'): a fixture
that fails under CI=true when it is unreachable (skips loudly elsewhere), as the databases do."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from kit.databases import _unavailable

NATS_URL = os.environ.get("CXHUB_TEST_NATS", "nats://127.0.0.1:4222")


async def _ping(url: str) -> None:
    import nats

    nc = await nats.connect(servers=[url], connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    try:
        await nc.jetstream().account_info()
    finally:
        await nc.close()


async def delete_streams(url: str, stream: str) -> None:
    """Delete a transport's streams: ``stream``, its dead letters and its nonce bucket."""
    import nats

    nc = await nats.connect(servers=[url], connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    try:
        js = nc.jetstream()
        for name in (stream, f"{stream}_DLQ", f"KV_{stream}_NONCES"):
            with contextlib.suppress(Exception):  # not created by this test
                await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server's URL (fails under CI=true when it is unreachable, else skips loudly)."""
    try:
        asyncio.run(_ping(NATS_URL))
    except Exception as exc:
        _unavailable(f"NATS JetStream at {NATS_URL}", exc)
    return NATS_URL


__all__ = ["NATS_URL", "delete_streams", "nats_url"]
