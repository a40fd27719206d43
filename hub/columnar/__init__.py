"""The columnar execution path of pull sources (and of bursts of pushed records).

A source that can hand its records over as Arrow columns (``read_arrow``: the ``sql`` source on
PostgreSQL reads them with ADBC, binary COPY into Arrow) is ingested a batch at a time by
vectorised code instead of one Python call per field per record:

- ``vector``: each YAML mapping compiled a second time, into expressions over columns (Polars and
  pyarrow.compute), with the row path's results by construction (flagged records go the row way);
- ``engine``: dedup, quarantine, identities, the touchpoints and the cursor, one transaction per
  batch as the row path, written with ``COPY``; reading, mapping and writing overlap;
- ``records``: a batch of row records (dicts) as Arrow columns, for sources that read rows;
- ``bursts``: bursts of pushed records (the receiver's group commit, the JetStream workers).

The package imports nothing itself: Polars and pyarrow load with the first module that needs them.

``hub.sync.run_sync`` takes this path when the source can yield Arrow batches and its mapping
compiles for columns (``columnar_plan``); otherwise the row path, and ``cxhub check`` says why.
"""
