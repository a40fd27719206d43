"""The scheduler's book: when each scheduled job is due next, kept in the store (table
``schedule``, migration ``0011_schedule``), so that a restart neither loses nor repeats a run.

- At start, :func:`first_run` says when a job runs first: at its stored time; **at once, and only
  once**, when that time has passed while no process ran (missed runs coalesce into one); and on
  a store that never ran it, one interval from now (the time is stored at once, so that restarts
  before it do not keep pushing it back).
- After a run, :func:`record_run` stores when it ran and when it is due next. Every process of a
  deployment reads and writes the same rows: a process whose own timer fires for a run another
  process has already made skips it (:func:`is_due`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Column, String, Table, select

from hub.store.engine import Store, insert_ignore, upsert
from hub.store.schema import UTCDateTime, metadata

schedule = Table(
    "schedule",
    metadata,
    Column("job", String(255), primary_key=True),
    Column("next_run_at", UTCDateTime(), nullable=False),
    Column("last_run_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: a timer that fires this little before the stored time still counts as due (clocks and timers differ)
DUE_TOLERANCE = timedelta(seconds=1)

#: when a job is due next after a run (or a start) at the given time
NextTime = Callable[[datetime], datetime]


def next_runs(store: Store) -> dict[str, datetime]:
    """Every job's stored next run time."""
    with store.connect() as conn:
        return {r.job: r.next_run_at for r in conn.execute(select(schedule.c.job, schedule.c.next_run_at))}


def first_run(store: Store, job: str, next_after: NextTime, now: datetime) -> datetime:
    """When ``job`` runs first in a process starting at ``now``: its stored time; ``now`` when
    that has passed (the missed runs, however many, are one run); on a store that never scheduled
    it, ``next_after(now)``, stored at once (a process that started first wins)."""
    planned = next_after(now)
    with store.begin() as conn:
        conn.execute(insert_ignore(conn, schedule, ["job"]).values(job=job, next_run_at=planned, updated_at=now))
        stored = conn.execute(select(schedule.c.next_run_at).where(schedule.c.job == job)).scalar_one()
    return max(stored, now)


def is_due(store: Store, job: str, now: datetime) -> bool:
    """Whether ``job`` is due at ``now`` by the book (False when another process ran it already
    and moved its next time on)."""
    with store.connect() as conn:
        stored = conn.execute(select(schedule.c.next_run_at).where(schedule.c.job == job)).scalar()
    return stored is None or stored <= now + DUE_TOLERANCE


def record_run(store: Store, job: str, *, started_at: datetime, next_run_at: datetime, now: datetime) -> None:
    """Store that ``job`` ran (from ``started_at``) and is due next at ``next_run_at``."""
    with store.begin() as conn:
        upsert(
            conn,
            schedule,
            ["job"],
            {"job": job, "next_run_at": next_run_at, "last_run_at": started_at, "updated_at": now},
        )
