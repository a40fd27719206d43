"""The direct transport: the receiver commits a push's records to the store itself (group commit)
and answers the platform after the commit. The embedded default."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.sdk.connector import RawRecord, Rejected
from hub.transport import Transport

if TYPE_CHECKING:
    from hub.group_commit import GroupCommitWriter
    from hub.runtime import Runtime

#: how long a request waits for its commit before answering 503 (WeChat gives up after 5 s)
STORE_TIMEOUT_SECONDS = 4.0


class DirectTransport(Transport):
    """Commit through the group-commit writer; a store failure or timeout raises (-> 503)."""

    kind = "direct"

    def __init__(self, rt: Runtime, writer: GroupCommitWriter, timeout: float = STORE_TIMEOUT_SECONDS):
        self.rt = rt
        self.writer = writer
        self.timeout = timeout

    async def hand_off(self, source: str, records: Sequence[RawRecord], rejected: Sequence[Rejected]) -> None:
        future = self.writer.submit(source, self.rt.mapping(source), records, rejected)
        await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)

    async def stop(self) -> None:
        await asyncio.to_thread(self.writer.close)
