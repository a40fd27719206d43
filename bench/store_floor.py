"""The store floor: what PostgreSQL alone takes to write the rows an ingest run wrote.

After a benchmark has ingested into a store, its rows (inbox, customers, identities, touchpoints:
everything ingest writes per event) are read back and COPY'd into a fresh, migrated store, one
transaction per batch as ingest commits them. No mapping, no validation, no identity lookups, no
row formatting in Python: the rows arrive as finished COPY text. Any ingest that stores the same
rows in the same schema on the same machine is slower than this, so a throughput target above
the floor cannot be met by ingest code, only by a different schema, store or machine.

Used by ``bench/ingest.py`` and ``bench/sql_sync.py``, which print it beside their own figure.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

#: in the order ingest writes them in a batch
TABLES = ("inbox", "customers", "identities", "touchpoints")


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def backend_cpu(conn: Any) -> float:
    """CPU seconds used so far by the PostgreSQL backends of ``conn``'s database (a psycopg
    connection), read from /proc; -1 when none can be read (PostgreSQL on another machine)."""
    pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    total, seen = 0.0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a backend that has just exited
            continue
        seen += 1
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total if seen else -1.0


def dump_rows(url: str) -> dict[str, tuple[list[str], list[bytes]]]:
    """Every row ingest wrote into the store at ``url``, as COPY text lines, per table."""
    import psycopg

    out: dict[str, tuple[list[str], list[bytes]]] = {}
    with psycopg.connect(_psycopg_url(url)) as conn:
        for table in TABLES:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "AND column_default IS NULL ORDER BY ordinal_position",
                    (table,),
                )
            ]
            buf = io.BytesIO()
            with conn.cursor().copy(f"COPY (SELECT {', '.join(cols)} FROM {table} ORDER BY ctid) TO STDOUT") as copy:
                for data in copy:
                    buf.write(data)
            out[table] = (cols, buf.getvalue().splitlines(keepends=True))
    return out


def store_floor(rows: dict[str, tuple[list[str], list[bytes]]], events: int, batch: int) -> dict[str, float]:
    """COPY ``rows`` (from :func:`dump_rows` of a run that stored ``events``) into a fresh store in
    transactions of ``batch`` events; returns events/s and PostgreSQL CPU (us) per event."""
    import sys

    import psycopg

    from hub.store import Store

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.kit
    from tests.kit.databases import temporary_postgres_database

    with temporary_postgres_database() as url:
        store = Store(url)
        store.migrate()
        store.dispose()
        batches = max(1, -(-events // batch))
        with psycopg.connect(_psycopg_url(url)) as conn:
            conn.commit()
            cpu0, t0 = backend_cpu(conn), time.perf_counter()
            for b in range(batches):
                with conn.transaction():
                    for table in TABLES:
                        cols, lines = rows[table]
                        lo, hi = len(lines) * b // batches, len(lines) * (b + 1) // batches
                        if lo == hi:
                            continue
                        with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                            copy.write(b"".join(lines[lo:hi]))
            seconds = time.perf_counter() - t0
            cpu = backend_cpu(conn) - cpu0
    return {
        "events_per_s": events / seconds,
        "seconds": seconds,
        "server_cpu_us_per_event": cpu / max(events, 1) * 1e6,
        "bytes_per_event": sum(len(x) for _, lines in rows.values() for x in lines) / max(events, 1),
    }
