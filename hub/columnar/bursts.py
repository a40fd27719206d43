"""Bursts of pushed records through the columnar path.

The webhook receiver's group commit and the JetStream ingest workers store pushed records a burst
at a time: the requests that queued up meanwhile (a few hundred at most), or the batch a worker
fetched (``transport.batch_size``, up to 10,000), and a bulk push whose body carries a list of
records (the ``webhook`` connector's ``records_path``) brings thousands in one request. A burst of
at least :data:`COLUMNAR_MIN` records is mapped, validated, hashed and written as columns (the
engine of pull syncs, one transaction, ``COPY`` on PostgreSQL); a smaller one, a mapping the vector
compiler cannot express or ``store.keep_raw_payloads`` takes the row path, which costs less below
that size (``bench/bursts.py`` measures both by burst size). Either way the touchpoints, inbox rows
with each record's own receipt time, quarantine, identities and feature hooks are the row path's.
Polars and pyarrow are imported with the first burst that takes the columnar path, not before: a
receiver that only ever sees small bursts starts without them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.ingest import Ingestor, IngestResult
from hub.mapping import CompiledMapping
from hub.sdk.collector import gc_paused
from hub.sdk.connector import Batch, RawRecord, Rejected

if TYPE_CHECKING:
    from hub.columnar.engine import ColumnarIngest
    from hub.columnar.vector import VectorMapping

log = logging.getLogger("cxhub.ingest")

#: the fewest records a burst has for the columnar path to pay (bench/bursts.py: its fixed cost per
#: batch, a few Polars queries and the plan built in Python, is paid back from about 1,000 records)
COLUMNAR_MIN = 1000


class BurstIngest:
    """Stores one burst of pushed records in one transaction, as columns when that pays."""

    def __init__(self, ingestor: Ingestor, *, columnar_min: int = COLUMNAR_MIN):
        self.ingestor = ingestor
        self.columnar_min = columnar_min
        self._columnar: ColumnarIngest | None = None
        self._plans: dict[int, tuple[CompiledMapping, VectorMapping | None]] = {}
        self._lock = threading.Lock()

    def vector(self, mapping: CompiledMapping) -> VectorMapping | None:
        """The mapping's vector form (compiled once), or None when the row path must map it."""
        if self.ingestor.keep_raw:  # the row path, known without loading the engine
            return None
        found = self._plans.get(id(mapping))
        if found is not None and found[0] is mapping:
            return found[1]
        from hub.columnar.engine import ColumnarIngest, mapping_plan

        with self._lock:
            if self._columnar is None:
                self._columnar = ColumnarIngest(self.ingestor)
            vm, why = mapping_plan(mapping, keep_raw=self.ingestor.keep_raw)
            if vm is None:
                log.info("pushes mapped by %r take the row path: %s", mapping.name, why)
            self._plans[id(mapping)] = (mapping, vm)
        return vm

    def ingest(
        self,
        source: str,
        mapping: CompiledMapping,
        records: Sequence[RawRecord],
        rejected: Sequence[Rejected] = (),
    ) -> IngestResult:
        """Store ``records`` (and quarantine ``rejected``) in one transaction."""
        vm = self.vector(mapping) if len(records) >= self.columnar_min else None
        if vm is not None and self._columnar is not None:
            from hub.columnar.records import from_rows

            columns = from_rows(Batch(list(records), {}, list(rejected)), [lst.field for lst in vm.lists])
            if columns is not None:
                with gc_paused():
                    return self._columnar.commit(self._columnar.prepare(source, mapping, vm, columns), None)
        return self.ingestor.ingest(source, mapping, records, rejected=rejected)
