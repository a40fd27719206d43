"""Group commit for the webhook receiver: many requests, few transactions, every reply after its
commit.

Requests hand their records to :class:`GroupCommitWriter` and wait on a future. A writer thread
takes whatever has queued up (up to ``max_batch`` requests), commits it per source in one
``Ingestor.ingest`` transaction and resolves each request's future. Under light load a batch is one
request (no added latency); under heavy load the cost of a commit is shared by the whole batch.
On PostgreSQL two writers run, so that one batch's commit (its WAL flush) overlaps the next
batch's work; records are sorted by id in each batch so that concurrent batches take row locks
in the same order (a retry of the same push in two batches waits, it does not deadlock). SQLite
has one writer at a time anyway: one thread.

A batch of thousands of records (bulk pushes) is stored through the columnar path
(:class:`hub.columnar.bursts.BurstIngest`), with the row path's results.

When a batch fails, its requests are retried one by one, so that one bad record only fails its
own request (503: the platform retries), never its neighbours.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from hub.columnar.bursts import BurstIngest
from hub.ingest import Ingestor, IngestResult
from hub.mapping import CompiledMapping
from hub.sdk.connector import RawRecord, Rejected

log = logging.getLogger("cxhub.web")


@dataclass
class _Job:
    source: str
    mapping: CompiledMapping
    records: Sequence[RawRecord]
    rejected: Sequence[Rejected]
    future: Future[IngestResult] = field(default_factory=Future)


class GroupCommitWriter:
    """A writer thread that commits queued push records in small batches."""

    def __init__(
        self, ingestor: Ingestor, *, max_batch: int = 200, writers: int | None = None, name: str = "cxhub-group-commit"
    ):
        self.ingestor = ingestor
        self.bursts = BurstIngest(ingestor)
        self.max_batch = max_batch
        self.writers = writers or (1 if ingestor.store.is_sqlite else 2)
        self._name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self.batches = 0  # for tests and the benchmark
        self.committed_requests = 0

    def submit(
        self,
        source: str,
        mapping: CompiledMapping,
        records: Sequence[RawRecord],
        rejected: Sequence[Rejected] = (),
    ) -> Future[IngestResult]:
        """Queue one request's records; the future resolves once they are committed (or failed)."""
        self._ensure_started()
        job = _Job(source, mapping, records, rejected)
        self._queue.put(job)
        return job.future

    def _ensure_started(self) -> None:
        if self._threads and all(t.is_alive() for t in self._threads):
            return
        with self._start_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.writers:
                t = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the threads."""
        alive = [t for t in self._threads if t.is_alive()]
        for _ in alive:
            self._queue.put(None)
        for t in alive:
            t.join(timeout)
        self._threads = []

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            groups: dict[tuple[str, int], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.source, id(job.mapping)), []).append(job)
            for group in groups.values():
                self._commit(group)

    def _commit(self, jobs: list[_Job]) -> None:
        first = jobs[0]
        try:
            result = self.bursts.ingest(
                first.source,
                first.mapping,
                sorted((r for j in jobs for r in j.records), key=lambda r: r.external_id),
                rejected=[r for j in jobs for r in j.rejected],
            )
        except Exception as exc:
            if len(jobs) > 1:
                for job in jobs:  # isolate the request that breaks the batch
                    self._commit([job])
                return
            log.warning("storing a push from %s failed: %s", first.source, type(exc).__name__)
            if not first.future.done():
                first.future.set_exception(exc)
            return
        self.batches += 1
        self.committed_requests += len(jobs)
        for job in jobs:
            if not job.future.done():
                job.future.set_result(result)
