"""Fixtures of the transport tests: the real NATS JetStream (``kit.nats``: under CI=true an
unreachable server fails the test) and a stream of each test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from kit.nats import delete_streams, nats_url  # noqa: F401  (the fixture)


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:  # noqa: F811
    """A stream name of this test's own (and its dead-letter stream and nonce bucket), deleted after."""
    name = f"T_{uuid.uuid4().hex[:12]}"
    yield name
    asyncio.run(delete_streams(nats_url, name))
