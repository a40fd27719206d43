"""Who is never invited: customers who opted out, customers with an open case (pluggable
``ExclusionCheck``s, asked once per batch when they can)."""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, String, cast, column, func, inspect, select, table
from sqlalchemy.sql.expression import ColumnClause

from hub.features.surveys.config import Exclusions, OpenCaseExclusion
from hub.features.surveys.lookups import among, batches, chunks
from hub.store.schema import customers


class ExclusionCheck(Protocol):
    """A reason not to invite a customer at all; ``None`` when there is none.

    A check may also offer ``many(conn, customer_ids) -> {customer_id: reason text}`` (only the
    excluded customers): the engine then asks once per batch instead of once per customer.
    """

    reason: str

    def __call__(self, conn: Connection, customer_id: str) -> str | None: ...


class OptedOutCheck:
    """Customers who opted out (``customers.opted_out``, set from the survey page too)."""

    reason = "opted_out"
    TEXT = "the customer opted out of surveys"

    def __call__(self, conn: Connection, customer_id: str) -> str | None:
        return self.many(conn, [customer_id]).get(customer_id)

    def many(self, conn: Connection, customer_ids: Sequence[str]) -> dict[str, str]:
        """The opted-out customers among ``customer_ids``, in one query per chunk."""
        out: dict[str, str] = {}
        for chunk in batches(conn, customer_ids):
            q = select(customers.c.id).where(among(conn, customers.c.id, chunk), customers.c.opted_out.is_(True))
            out.update((r[0], self.TEXT) for r in conn.execute(q))
        return out


class OpenCaseCheck:
    """Customers with an open case (the feedback feature's ``cases`` table): don't ask someone we
    are still putting right. Looks for the table each minute until it exists, so the hub runs
    without it."""

    reason = "excluded_open_case"

    def __init__(self, cfg: OpenCaseExclusion, recheck_seconds: float = 60.0):
        self.cfg = cfg
        self.recheck_seconds = recheck_seconds
        self._exists: bool | None = None
        self._checked_at = 0.0

    def _table_exists(self, conn: Connection) -> bool:
        if self._exists or (self._exists is False and _time.monotonic() - self._checked_at < self.recheck_seconds):
            return bool(self._exists)
        self._exists = inspect(conn).has_table(self.cfg.table)
        self._checked_at = _time.monotonic()
        return self._exists

    def __call__(self, conn: Connection, customer_id: str) -> str | None:
        return self.many(conn, [customer_id]).get(customer_id)

    def many(self, conn: Connection, customer_ids: Sequence[str]) -> dict[str, str]:
        """Customers among ``customer_ids`` with open cases: one grouped count per chunk."""
        if not self.cfg.enabled or not customer_ids or not self._table_exists(conn):
            return {}
        cust: ColumnClause[Any] = column(self.cfg.customer_column)
        status: ColumnClause[Any] = column(self.cfg.status_column)
        t = table(self.cfg.table, cust, status)
        out: dict[str, str] = {}
        # the configured table's customer column may be of any type (a PostgreSQL uuid...): compare
        # it as text (a no-op cast for the text columns of the feedback feature's cases table,
        # index kept)
        as_text = cast(cust, String())
        for chunk in chunks(customer_ids):
            q = select(as_text, func.count()).select_from(t).where(as_text.in_(chunk)).group_by(as_text)
            if self.cfg.closed_statuses:
                q = q.where(status.not_in(self.cfg.closed_statuses))
            for cid, n in conn.execute(q):
                if n:
                    out[str(cid)] = f"the customer has {n} open case(s) in {self.cfg.table}"
        return out


def default_exclusions(cfg: Exclusions) -> list[ExclusionCheck]:
    """The checks the ``exclusions:`` section turns on, in order: opted out, then open case."""
    checks: list[ExclusionCheck] = []
    if cfg.opted_out:
        checks.append(OptedOutCheck())
    if cfg.open_case.enabled:
        checks.append(OpenCaseCheck(cfg.open_case))
    return checks


def exclusions_for(
    conn: Connection, checks: Sequence[ExclusionCheck], customer_ids: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """``{customer: (reason code, text)}``: the first check (in order) that excludes each customer."""
    found: dict[str, tuple[str, str]] = {}
    for check in checks:
        todo = [c for c in customer_ids if c not in found]
        if not todo:
            break
        many = getattr(check, "many", None)
        if many is not None:
            hits: dict[str, str] = many(conn, todo)
        else:  # a plain callable: once per customer
            hits = {c: why for c in todo if (why := check(conn, c))}
        for cid in todo:
            if hits.get(cid):
                found[cid] = (check.reason, hits[cid])
    return found
