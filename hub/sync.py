"""One pull pass of a source: read batches after the committed state, ingest each with its state."""

from __future__ import annotations

from collections.abc import Callable

from hub.ingest import IngestResult, load_state, reset_state
from hub.runtime import Runtime


def run_sync(
    rt: Runtime,
    source: str,
    *,
    full: bool = False,
    on_batch: Callable[[int, int | None], None] | None = None,
) -> IngestResult:
    """Sync ``source`` once. Each batch commits with its cursor; a crash resumes after the last one."""
    src = rt.pull_source(source)
    mapping = rt.mapping(source)
    if full:
        reset_state(rt.store, source)
    state = load_state(rt.store, source)
    total = src.estimate(state)
    result = IngestResult()
    for batch in src.read(state, full=full):
        result.add(rt.ingestor.ingest(source, mapping, batch.records, batch.state, batch.rejected))
        if on_batch is not None:
            on_batch(result.read, total)
    return result
