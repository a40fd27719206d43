"""Claiming outbox rows: leases, digest membership, putting rows back unsent.

A claim takes due rows (``pending``/``failed`` whose ``next_attempt_at`` has come, or ``sending``
rows whose lease expired because their worker died), locked with ``FOR UPDATE SKIP LOCKED``
(several processes share one PostgreSQL without waiting on each other), and marks them
``sending`` with ``locked_by``/``locked_until`` (the lease) and ``attempts + 1``. On PostgreSQL
that is one statement: ``WITH picked AS MATERIALIZED (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT
n), claimed AS (UPDATE outbox ... FROM picked RETURNING ...) SELECT ... LEFT JOIN outbox_batches``.
SQLite has no row locks (its writers are serialised) and no DML in a CTE: two statements there.

Every write after the claim is guarded by ``locked_by``: a worker whose lease ran out (another
worker has the rows now) changes nothing.

Leases are short (``CXHUB_DELIVERY_LEASE_SECONDS``, 15 s by default) and a live worker renews
every row it holds with one statement per heartbeat (:func:`renew_held`, every third of the
lease): a worker that dies (``kill -9``, a lost host) stops renewing, and its rows are due again
at most one lease after its last heartbeat. A worker that stops (SIGTERM) puts back what it has
not sent (:func:`release_held`) so that nobody waits for the lease.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from hub.outbox.messages import message_from_dict
from hub.outbox.tables import outbox_batches
from hub.sdk.connector import OutboundMessage
from hub.store.schema import outbox

log = logging.getLogger("cxhub.outbox")


@dataclass
class Claimed:
    """An outbox row this worker holds the lease on."""

    id: int
    key: str
    destination: str
    message: OutboundMessage
    attempts: int
    last_error: str | None
    batch_key: str | None = None


_CLAIMED_COLUMNS = (
    outbox.c.id,
    outbox.c.key,
    outbox.c.destination,
    outbox.c.message,
    outbox.c.attempts,
    outbox.c.last_error,
)


def _claimed(row: Any, batch_key: str | None) -> Claimed:
    msg = row.message if isinstance(row.message, dict) else json.loads(row.message)
    return Claimed(row.id, row.key, row.destination, message_from_dict(msg), row.attempts, row.last_error, batch_key)


def _readable(
    conn: Connection, rows: Sequence[tuple[Any, str | None]], now: datetime, worker_id: str
) -> dict[int, Claimed]:
    """The claimed rows as messages. A row that cannot be read back (recipients sealed with a secret
    key this process does not have, a document edited by hand) would fail every pump that claims
    it, and the rows behind it with it: it is marked ``dead`` with the reason instead (``cxhub
    outbox retry --dead`` sends it again once the cause is fixed) and leaves its digest."""
    out: dict[int, Claimed] = {}
    bad: dict[int, tuple[str, str]] = {}
    for r, bk in rows:
        try:
            out[r.id] = _claimed(r, bk)
        except Exception as exc:  # whatever the row holds, it must not stop the others
            bad[r.id] = (r.destination, f"unreadable message, not sent: {exc}"[:500])
    for oid, (destination, why) in bad.items():
        log.error("outbox row %d to %s: %s", oid, destination, why)
        conn.execute(
            update(outbox)
            .where(outbox.c.id == oid, outbox.c.locked_by == worker_id)
            .values(status="dead", last_error=why, locked_by=None, locked_until=None, updated_at=now)
        )
    if bad:
        conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(list(bad))))
    return out


def _due(now: datetime) -> Any:
    return or_(
        and_(outbox.c.status.in_(("pending", "failed")), outbox.c.next_attempt_at <= now),
        and_(outbox.c.status == "sending", outbox.c.locked_until <= now),
    )


def _claiming(worker_id: str, lease: timedelta, now: datetime) -> dict[str, Any]:
    return {
        "status": "sending",
        "locked_by": worker_id,
        "locked_until": now + lease,
        "attempts": outbox.c.attempts + 1,
        "updated_at": now,
    }


def _picked(conn: Connection, q: Any, name: str) -> Any:
    """The rows to lock, as something an UPDATE can join: on PostgreSQL a ``MATERIALIZED`` CTE,
    so the locking ``LIMIT`` query runs exactly once whatever join the planner picks."""
    if conn.dialect.name == "sqlite":
        return q.subquery(name)
    return q.cte(name).prefix_with("MATERIALIZED")


def claim(
    conn: Connection,
    *,
    now: datetime,
    worker_id: str,
    lease: timedelta,
    destinations: Sequence[str],
    limit: int,
) -> list[Claimed]:
    """Claim up to ``limit`` due rows of ``destinations`` for ``worker_id`` (oldest due first),
    with the digest each belongs to; a digest comes whole or not at all. Sorted by id."""
    picked_q = (
        select(outbox.c.id)
        .where(_due(now), outbox.c.destination.in_(destinations))
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    picked = _picked(conn, picked_q, "picked")
    stmt = (
        update(outbox)
        .where(outbox.c.id == picked.c.id)
        .values(**_claiming(worker_id, lease, now))
        .returning(*_CLAIMED_COLUMNS)
    )
    if conn.dialect.name == "sqlite":  # no DML in a CTE there; one process, so two statements are fine
        got = conn.execute(stmt).all()
        ids = [r.id for r in got]
        batches: dict[int, str] = (
            dict(
                conn.execute(
                    select(outbox_batches.c.outbox_id, outbox_batches.c.batch_key).where(
                        outbox_batches.c.outbox_id.in_(ids)
                    )
                ).all()
            )
            if ids
            else {}
        )
        rows = [(r, batches.get(r.id)) for r in got]
    else:  # one round trip: claim, and the digest each row belongs to
        claimed = stmt.cte("claimed")
        q = select(claimed, outbox_batches.c.batch_key).select_from(
            claimed.outerjoin(outbox_batches, outbox_batches.c.outbox_id == claimed.c.id)
        )
        rows = [(r, r.batch_key) for r in conn.execute(q)]
    if not rows:
        return []
    out = _readable(conn, rows, now, worker_id)
    if any(c.batch_key for c in out.values()):
        _complete_batches(conn, now, out, worker_id, lease)
    return [out[i] for i in sorted(out)]


def _complete_batches(
    conn: Connection, now: datetime, out: dict[int, Claimed], worker_id: str, lease: timedelta
) -> None:
    """A digest is sent whole or not at all: claim its missing members too, or give it up.

    ``LIMIT`` can cut through a digest, or another worker may hold part of it (its lease ran
    out while this worker claimed the rest): the members this worker could not get are left
    to the other, and the ones it got are put back unchanged.
    """
    keys = {c.batch_key for c in out.values() if c.batch_key}
    members: dict[str, set[int]] = {}
    for oid, bk in conn.execute(
        select(outbox_batches.c.outbox_id, outbox_batches.c.batch_key).where(outbox_batches.c.batch_key.in_(keys))
    ):
        members.setdefault(bk, set()).add(oid)
    for bk, mids in members.items():
        missing = mids - set(out)
        if not missing:
            continue
        lockable = _picked(
            conn,
            select(outbox.c.id).where(outbox.c.id.in_(missing), _due(now)).with_for_update(skip_locked=True),
            "lockable",
        )
        got = conn.execute(
            update(outbox)
            .where(outbox.c.id == lockable.c.id)
            .values(**_claiming(worker_id, lease, now))
            .returning(*_CLAIMED_COLUMNS)
        ).all()
        out.update(_readable(conn, [(r, bk) for r in got], now, worker_id))
        if {r.id for r in got} != missing:  # incomplete: give back what this worker holds of it
            mine = [out.pop(i) for i in sorted(mids) if i in out]
            _unclaim(conn, mine, worker_id, now)


def _unclaim(conn: Connection, rows: Sequence[Claimed], worker_id: str, now: datetime) -> None:
    """Undo a claim in the claiming transaction: status from the last error, attempt given back."""
    for status in ("pending", "failed"):
        ids = [r.id for r in rows if (status == "failed") == bool(r.last_error)]
        if ids:
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.locked_by == worker_id)
                .values(
                    status=status,
                    attempts=outbox.c.attempts - 1,
                    locked_by=None,
                    locked_until=None,
                    updated_at=now,
                )
            )


def release(
    conn: Connection,
    rows: Sequence[Claimed],
    *,
    worker_id: str,
    when: datetime,
    now: datetime,
    error: str | None = None,
) -> None:
    """Put claimed rows back, unsent, due at ``when``, without using up an attempt.

    They go back ``failed`` when they carry an error (``error``, or the one of a previous
    attempt), ``pending`` otherwise.
    """
    for status in ("pending", "failed"):
        ids = [r.id for r in rows if (status == "failed") == bool(error or r.last_error)]
        if not ids:
            continue
        values: dict[str, Any] = {
            "status": status,
            "attempts": outbox.c.attempts - 1,
            "locked_by": None,
            "locked_until": None,
            "next_attempt_at": when,
            "updated_at": now,
        }
        if error:
            values["last_error"] = error[:2000]
        conn.execute(update(outbox).where(outbox.c.id.in_(ids), outbox.c.locked_by == worker_id).values(**values))


def renew(conn: Connection, ids: Sequence[int], *, worker_id: str, lease: timedelta, now: datetime) -> bool:
    """Extend the lease on ``ids``; False when this worker no longer holds every one of them."""
    n = conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.locked_by == worker_id, outbox.c.status == "sending")
        .values(locked_until=now + lease, updated_at=now)
    ).rowcount
    return n == len(ids)


def renew_held(
    conn: Connection, *, worker_id: str, lease: timedelta, now: datetime, ids: Sequence[int] | None = None
) -> int:
    """The heartbeat: extend the lease of the rows ``worker_id`` holds (``sending`` and locked by
    it; only ``ids`` among them when given: the pump in progress) to ``now + lease``, in one
    statement. Returns how many rows it renewed."""
    q = update(outbox).where(outbox.c.status == "sending", outbox.c.locked_by == worker_id)
    if ids is not None:
        q = q.where(outbox.c.id.in_(list(ids)))
    return int(conn.execute(q.values(locked_until=now + lease)).rowcount)


def release_held(conn: Connection, *, worker_id: str, now: datetime) -> int:
    """Put back every row ``worker_id`` still holds, unsent and due now, without using up an
    attempt (a stopping worker that sends nothing more). Returns how many."""
    n = 0
    for status, has_error in (("pending", False), ("failed", True)):
        n += int(
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.status == "sending",
                    outbox.c.locked_by == worker_id,
                    outbox.c.last_error.is_not(None) if has_error else outbox.c.last_error.is_(None),
                )
                .values(
                    status=status,
                    attempts=outbox.c.attempts - 1,
                    locked_by=None,
                    locked_until=None,
                    next_attempt_at=now,
                    updated_at=now,
                )
            ).rowcount
        )
    return n


def remember_digest(conn: Connection, ids: Sequence[int], batch_key: str) -> None:
    """Store that ``ids`` are sent as one digest ``batch_key`` (replacing any earlier membership),
    so a retry or a re-claim after a crash sends the same members under the same key."""
    conn.execute(delete(outbox_batches).where(outbox_batches.c.outbox_id.in_(ids)))
    conn.execute(insert(outbox_batches), [{"outbox_id": i, "batch_key": batch_key} for i in ids])
