"""A ``COPY`` into PostgreSQL that does not wait for the server's answer: ingest maps the next
batch while PostgreSQL stores this one. Built on psycopg's own COPY machinery, split in two halves
(send, then read the answer later)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from psycopg import pq
from psycopg.copy import LibpqWriter
from psycopg.errors import error_from_result
from psycopg.waiting import Wait
from sqlalchemy import Connection, Table


class DeferredCopy:
    """A ``COPY`` whose rows and end marker have been sent to PostgreSQL, its answer not read yet
    (:func:`copy_deferred`). Until :meth:`wait` the connection takes no other statement."""

    def __init__(self, raw: Any):
        self._raw = raw
        self.done = False

    def wait(self) -> None:
        """Read PostgreSQL's answer to the COPY; raises the driver's error (a unique violation, a
        lost connection) as the COPY itself would have."""
        if self.done:
            return
        self.done = True
        results = self._raw.wait(_read_results(self._raw.pgconn))
        for res in results:
            if res.status != pq.ExecStatus.COMMAND_OK:
                raise error_from_result(res, encoding=self._raw.info.encoding)


class _SendOnlyWriter(LibpqWriter):
    """psycopg's COPY writer, except that ending the COPY sends the end marker and returns: the
    answer is read by :meth:`DeferredCopy.wait`. An error inside the ``with copy`` block still
    cancels the COPY and waits, as psycopg's own writer does."""

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is not None:
            super().finish(exc)
            return
        self.connection.wait(_send_copy_end(self._pgconn))


def _send_copy_end(pgconn: Any) -> Generator[Wait, Any, None]:
    # the first half of psycopg.generators.copy_end: queue the end marker and flush it
    while pgconn.put_copy_end(None) == 0:
        while not (yield Wait.W):
            continue
    while True:
        while not (yield Wait.W):
            continue
        if pgconn.flush() == 0:
            break


def _read_results(pgconn: Any) -> Generator[Wait, Any, list[Any]]:
    # the second half: every result of the command, as psycopg.generators.fetch_many reads them
    results: list[Any] = []
    while True:
        if pgconn.is_busy():
            while not (yield Wait.R):
                continue
            while True:
                pgconn.consume_input()
                if not pgconn.is_busy():
                    break
                while not (yield Wait.R):
                    continue
        res = pgconn.get_result()
        if res is None:
            return results
        results.append(res)


def copy_deferred(
    conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]], columns: Sequence[str]
) -> DeferredCopy:
    """``COPY`` ``rows`` (tuples in ``columns`` order; JSON columns as :class:`JsonText`) into
    ``table`` on PostgreSQL without waiting for PostgreSQL to store them: the caller does other
    work (maps the next batch) while the server writes, then calls :meth:`DeferredCopy.wait`
    before anything else on ``conn``. No savepoint: a conflict fails the transaction, and the
    caller redoes the batch the careful way (:func:`copy_new_rows`)."""
    raw = conn.connection.driver_connection
    assert raw is not None  # a live connection inside the caller's transaction
    collist = ", ".join(f'"{c}"' for c in columns)
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {table.name} ({collist}) FROM STDIN", writer=_SendOnlyWriter(cur)) as copy,
    ):
        write = copy.write_row
        for row in rows:
            write(row)
    return DeferredCopy(raw)
