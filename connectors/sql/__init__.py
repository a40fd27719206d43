"""SQL pull source: CRM / ERP / POS databases through any SQLAlchemy URL, on an incremental cursor.

What it reads
    ``table: orders`` or an arbitrary ``query: SELECT ...``. The query is wrapped as a derived
    table and the cursor condition is injected around it::

        SELECT * FROM (<query>) AS cxhub_src
        WHERE (cxhub_src.updated_at, cxhub_src.id) > (:c0, :c1)      -- row-value form
        ORDER BY cxhub_src.updated_at, cxhub_src.id

    PostgreSQL and MariaDB push that predicate into the derived table, so an index on the cursor
    columns is used. ``cursor_style: expanded`` writes the portable OR form instead
    (``a > :c0 OR (a = :c0 AND b > :c1)``) for databases without row values (SQL Server).

Cursor
    One column or a composite (``[updated_at, id]``), strict-greater. The state after each batch is
    the cursor of its last record, committed with the batch. ``lookback: 10m`` re-reads that much
    before the committed cursor (late commits); dedup on (source, id) absorbs the overlap.

Header / lines without Python
    ``children:`` runs one more query per batch for each child collection (``WHERE key IN (...)``;
    on PostgreSQL one ``WHERE key = ANY(:keys)`` with the batch's keys as one array) and nests the
    rows under the header as a list; or ``group_by:`` + ``line_columns:`` folds one joined query
    (ordered by the cursor) into one record per header key.

Memory and speed
    Rows stream from a server-side cursor, ``batch_size`` rows per fetch: constant memory whatever
    the table size. On PostgreSQL the rows come straight from a psycopg named cursor as tuples (no
    SQLAlchemy ``Row`` per row; the children query runs on the same connection); elsewhere through
    SQLAlchemy (``stream_results`` + ``yield_per``). Rows become dicts through code generated for
    the query's columns. A dropped connection raises ``RetriableError``: ``run_sync`` retries and
    resumes from the last committed batch.
"""

from connectors.sql.options import ChildQuery, SqlOptions
from connectors.sql.source import SqlSource
from connectors.sql.values import decode_cursor, encode_cursor

__all__ = ["ChildQuery", "SqlOptions", "SqlSource", "decode_cursor", "encode_cursor"]
