"""Writing back what sends came to: ``sent`` with the platform's receipt, ``failed`` with the next
attempt, ``dead`` with the reason, and rows deferred because the platform throttled.

Every update is guarded by ``locked_by``: a worker whose lease ran out (another worker has the
rows now) records nothing, and learns which rows those were.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, bindparam, delete, func, select, text, update

from hub.outbox.tables import outbox_batches
from hub.redact import redact
from hub.store.schema import UTCDateTime, outbox

#: one row's outcome: (id, status, receipt, last_error, next_attempt_at); a None receipt or next
#: attempt keeps the stored one
OutcomeRow = tuple[int, str, str | None, str | None, datetime | None]


def record(conn: Connection, data: Sequence[OutcomeRow], *, worker_id: str, now: datetime) -> list[int]:
    """Record outcomes of rows ``worker_id`` holds; returns the ids it no longer held (not written).

    A ``sent`` row gets ``sent_at = now``; the digest memberships of rows that are final (sent /
    dead) are deleted with them; a failed digest keeps its members for the retry.

    PostgreSQL: one statement for the whole group, ``WITH u AS (UPDATE outbox ... FROM
    unnest(...) RETURNING ...), d AS (DELETE the digest memberships of sent / dead rows) SELECT
    id FROM u``; meant for an autocommit connection (the statement is atomic by itself). SQLite:
    one transaction with the update executed per row (in-process, no round trips to save).
    """
    # receipts and errors are read by people (`cxhub outbox`) and may quote the URL the platform
    # was called at, or an exception text that does: credentials are redacted before they are kept
    data = [(d[0], d[1], _redacted(d[2]), _redacted(d[3]), d[4]) for d in data]
    fixed: dict[str, Any] = {"locked_by": None, "locked_until": None, "updated_at": now}
    if conn.dialect.name == "sqlite":
        stmt = (
            update(outbox)
            .where(outbox.c.id == bindparam("b_id"), outbox.c.locked_by == worker_id)
            .values(
                **fixed,
                status=bindparam("b_status"),
                receipt=func.coalesce(bindparam("b_receipt", type_=Text()), outbox.c.receipt),
                last_error=bindparam("b_error", type_=Text()),
                next_attempt_at=func.coalesce(bindparam("b_next", type_=UTCDateTime()), outbox.c.next_attempt_at),
                sent_at=func.coalesce(bindparam("b_sent", type_=UTCDateTime()), outbox.c.sent_at),
            )
        )
        params = [
            {
                "b_id": d[0],
                "b_status": d[1],
                "b_receipt": d[2],
                "b_error": d[3],
                "b_next": d[4],
                "b_sent": now if d[1] == "sent" else None,
            }
            for d in data
        ]
        finished = [d[0] for d in data if d[1] in ("sent", "dead")]
        with conn.begin():
            n = int(conn.execute(stmt, params).rowcount or 0)
            if finished:
                conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(finished)))
        missing = [d[0] for d in data] if n != len(data) else []  # sqlite3 only sums row counts
        if missing:  # which rows is unknown here, but rarely matters: count by re-reading them
            written = set(
                conn.execute(
                    select(outbox.c.id).where(
                        outbox.c.id.in_(missing), outbox.c.locked_by.is_(None), outbox.c.updated_at == now
                    )
                ).scalars()
            )
            missing = [i for i in missing if i not in written]
        return missing
    # a fixed statement whatever the group's size (the rows travel as arrays): compiled once by
    # SQLAlchemy and prepared once by PostgreSQL, instead of once per group size
    written = set(
        conn.execute(
            _PG_RECORD,
            {
                "ids": [d[0] for d in data],
                "statuses": [d[1] for d in data],
                "receipts": [d[2] for d in data],
                "errors": [d[3] for d in data],
                "nexts": [d[4] for d in data],
                "now": now,
                "worker": worker_id,
            },
        ).scalars()
    )
    return [d[0] for d in data if d[0] not in written]


def record_throttled(
    conn: Connection, ids: Sequence[int], *, worker_id: str, until: datetime, error: str, now: datetime
) -> int:
    """Rows the platform refused for its rate limit: ``failed``, due when the block ends, and
    the attempt given back. Returns how many this worker still held."""
    n = conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.locked_by == worker_id)
        .values(
            status="failed",
            attempts=outbox.c.attempts - 1,  # the platform's limit is not the message's fault
            next_attempt_at=until,
            last_error=redact(error)[:2000],
            locked_by=None,
            locked_until=None,
            updated_at=now,
        )
    ).rowcount
    return int(n or 0)


def _redacted(text: str | None) -> str | None:
    return None if text is None else redact(text)


#: record a group of outcomes in one statement (PostgreSQL); the digest memberships of rows that
#: are final (sent / dead) go in the same statement, only for rows this worker still held
_PG_RECORD = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:ids AS bigint[]), CAST(:statuses AS varchar[]), CAST(:receipts AS text[]),
            CAST(:errors AS text[]), CAST(:nexts AS timestamptz[])
        ) AS v (id, status, receipt, last_error, next_at)
    ), u AS (
        UPDATE outbox SET
            status = v.status,
            receipt = COALESCE(v.receipt, outbox.receipt),
            last_error = v.last_error,
            next_attempt_at = COALESCE(v.next_at, outbox.next_attempt_at),
            sent_at = CASE WHEN v.status = 'sent' THEN CAST(:now AS timestamptz) ELSE outbox.sent_at END,
            locked_by = NULL,
            locked_until = NULL,
            updated_at = CAST(:now AS timestamptz)
        FROM v
        WHERE outbox.id = v.id AND outbox.locked_by = :worker
        RETURNING outbox.id, outbox.status
    ), d AS (
        DELETE FROM outbox_batches WHERE outbox_id IN (SELECT id FROM u WHERE status IN ('sent', 'dead'))
    )
    SELECT id FROM u
    """
)
