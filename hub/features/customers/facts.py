"""What the store knows about each customer, read in batches: purchase histories summarised in SQL
(one row per customer: purchase days, first and last purchase, spend, refunds) and what they said
and lived (answers, reviews, cases), streamed in customer order and merged.

Nothing here holds more than one batch of customers: the purchase summary is one grouped query
read through a server-side cursor, and the feedback touchpoints and cases are two more cursors in
the same customer order, consumed alongside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from hub.features.customers.scoring import CustomerFacts

#: touchpoint kinds that carry what a customer said
VOICE_KINDS = ("review", "survey_response", "message", "service_contact")
#: a sentiment at or under this (on -1..1) is a negative review or message
NEGATIVE_SENTIMENT = -0.3


def _amount_sql(dialect: str) -> tuple[str, str]:
    """The raw amount (read from the document once) and the number made of it."""
    if dialect == "postgresql":
        # one path lookup parses the (plain json) document once; a value that is not a plain
        # decimal is NULL (counted as a bad amount), never an error
        return (
            "doc #>> '{order,amount}'",
            "CASE WHEN raw_amount ~ '^-?[0-9]+(\\.[0-9]+)?$' THEN CAST(raw_amount AS double precision) END",
        )
    return "json_extract(doc, '$.order.amount')", "CAST(raw_amount AS REAL)"


def summary_sql(dialect: str) -> str:
    """One row per customer with at least one transaction or refund, in customer order."""
    raw_amount, amount = _amount_sql(dialect)
    if dialect == "postgresql":
        day = "CAST(occurred_at AT TIME ZONE :tz AS date)"
        store = "mode() WITHIN GROUP (ORDER BY store)"
        store_col = ""
    else:
        day = "date(occurred_at, :offset)"
        store = (
            "(SELECT t2.store FROM touchpoints t2 WHERE t2.customer_id = flagged.customer_id AND t2.store IS NOT NULL "
            "AND t2.kind = 'transaction' GROUP BY t2.store ORDER BY COUNT(*) DESC, t2.store LIMIT 1)"
        )
        store_col = ""
    # the row-level values are computed once per transaction (MATERIALIZED: PostgreSQL would
    # otherwise inline the CTE and parse the JSON amount again at every reference), and the sort
    # and grouping that follow carry these narrow rows, not the documents
    materialized = "MATERIALIZED " if dialect == "postgresql" else ""
    fence = "OFFSET 0" if dialect == "postgresql" else ""  # keeps the document read once per row
    return f"""
        WITH tx AS {materialized}(
            SELECT customer_id, kind, occurred_at, store, day, {amount} AS amount
            FROM (
                SELECT customer_id, kind, occurred_at, store{store_col}, {day} AS day, {raw_amount} AS raw_amount
                FROM touchpoints
                WHERE customer_id IS NOT NULL AND kind IN ('transaction', 'refund') AND occurred_at < :now
                  AND (:lo = '' OR customer_id >= :lo) AND (:hi = '' OR customer_id < :hi)
                {fence}
            ) AS raw
        ), flagged AS (
            SELECT customer_id, kind, occurred_at, store, day, amount,
                   (kind = 'transaction' AND amount > 0) AS good
            FROM tx
        )
        SELECT customer_id,
               COUNT(DISTINCT CASE WHEN good THEN day END) AS purchases,
               MIN(CASE WHEN good THEN day END) AS first_day,
               MAX(CASE WHEN good THEN day END) AS last_day,
               MIN(CASE WHEN good THEN occurred_at END) AS first_at,
               MAX(CASE WHEN good THEN occurred_at END) AS last_at,
               COALESCE(SUM(CASE WHEN occurred_at >= :value_since AND amount IS NOT NULL THEN
                   CASE WHEN kind = 'refund' THEN -ABS(amount) ELSE amount END END), 0) AS spend,
               SUM(CASE WHEN kind = 'refund' OR amount < 0 THEN 1 ELSE 0 END) AS refunds,
               SUM(CASE WHEN kind = 'transaction' AND (amount IS NULL OR amount = 0) THEN 1 ELSE 0 END) AS bad_amounts,
               {store} AS store
        FROM flagged GROUP BY customer_id ORDER BY customer_id
    """


def _day(value: Any) -> datetime | None:
    """A date from either backend (PostgreSQL: date; SQLite: 'YYYY-MM-DD') as a midnight datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value[:10])
    return datetime(value.year, value.month, value.day)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FactReader:
    """Reads :class:`CustomerFacts` in customer order, ``batch`` customers at a time."""

    def __init__(
        self,
        conn: Connection,
        voice_conn: Connection,
        case_conn: Connection | None,
        *,
        now: datetime,
        timezone: str,
        value_window: float,
        signal_window: float,
        batch: int,
    ):
        self.conn = conn
        self.voice_conn = voice_conn
        self.case_conn = case_conn
        self.now = now
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone
        self.today = _day(now.astimezone(self.tz).date())
        self.value_since = now - timedelta(seconds=value_window)
        self.signal_since = now - timedelta(seconds=signal_window)
        self.batch = batch
        self.unattributed = 0

    def _params(self, lo: str = "", hi: str = "") -> dict[str, Any]:
        offset = self.now.astimezone(self.tz).utcoffset() or timedelta(0)
        hours = offset.total_seconds() / 3600
        return {
            "now": self.now,
            "tz": self.timezone,
            "offset": f"{hours:+.0f} hours",
            "value_since": self.value_since,
            "lo": lo,
            "hi": hi,
        }

    def summaries(self, conn: Connection | None = None, *, lo: str = "", hi: str = "") -> Iterator[dict[str, Any]]:
        """The purchase summary rows (customer order), optionally for ids in [lo, hi)."""
        c = conn or self.conn
        dialect = c.dialect.name
        sql = summary_sql(dialect)
        params = self._params(lo, hi)
        if dialect != "postgresql":
            params["now"] = self.now.replace(tzinfo=None)
            params["value_since"] = self.value_since.replace(tzinfo=None)
        else:
            # the grouping sorts narrow rows: in memory rather than in temporary files (this
            # transaction only; the reading connection does nothing else)
            c.execute(text("SET LOCAL work_mem = '64MB'"))
        result = c.execution_options(stream_results=True, yield_per=self.batch).execute(text(sql), params)
        for row in result.mappings():
            yield dict(row)

    def count_unattributed(self) -> int:
        """Transactions without a customer (they cannot be scored; the run reports how many)."""
        q = "SELECT COUNT(*) FROM touchpoints WHERE customer_id IS NULL AND kind IN ('transaction', 'refund')"
        self.unattributed = int(self.conn.execute(text(q)).scalar() or 0)
        return self.unattributed

    def history(self, row: dict[str, Any]) -> CustomerFacts:
        """x, t_x and T (days) of one summary row."""
        first, last = _day(row["first_day"]), _day(row["last_day"])
        purchases = int(row["purchases"] or 0)
        f = CustomerFacts(
            customer_id=row["customer_id"],
            store=row.get("store"),
            purchases=purchases,
            spend=float(row["spend"] or 0.0),
            refunds=int(row["refunds"] or 0),
            bad_amounts=int(row["bad_amounts"] or 0),
            first_purchase_at=_aware(row["first_at"]),
            last_purchase_at=_aware(row["last_at"]),
        )
        if first is not None and last is not None and self.today is not None:
            f.x = max(purchases - 1, 0)
            f.t_x = float((last - first).days)
            f.t_obs = float(max((self.today - first).days, (last - first).days))
        return f

    # ------------------------------------------------------------ what they said and lived

    def _voice(self) -> Iterator[tuple[str, datetime, dict[str, Any]]]:
        q = text(
            "SELECT customer_id, occurred_at, doc FROM touchpoints WHERE customer_id IS NOT NULL "
            f"AND kind IN ({', '.join(repr(k) for k in VOICE_KINDS)}) AND occurred_at >= :since AND occurred_at < :now "
            "ORDER BY customer_id, occurred_at"
        )
        since, now = self.signal_since, self.now
        if self.voice_conn.dialect.name != "postgresql":
            since, now = since.replace(tzinfo=None), now.replace(tzinfo=None)
        result = self.voice_conn.execution_options(stream_results=True, yield_per=self.batch).execute(
            q, {"since": since, "now": now}
        )
        for cid, at, doc in result:
            yield cid, _aware(at) or self.now, doc if isinstance(doc, dict) else json.loads(doc)

    def _cases(self) -> Iterator[tuple[str, str, datetime | None, datetime, Any]]:
        if self.case_conn is None:
            return
        q = text(
            "SELECT customer_id, status, acknowledged_at, ack_due_at, resolve_due_at, resolved_at, recovered, opened_at "
            "FROM cases WHERE customer_id IS NOT NULL AND opened_at >= :since ORDER BY customer_id"
            + (' COLLATE "C"' if self.case_conn.dialect.name == "postgresql" else "")  # byte order, as Python's
        )
        since = (
            self.signal_since if self.case_conn.dialect.name == "postgresql" else self.signal_since.replace(tzinfo=None)
        )
        result = self.case_conn.execution_options(stream_results=True, yield_per=self.batch).execute(
            q, {"since": since}
        )
        for row in result.mappings():
            yield row["customer_id"], row["status"], _aware(row["acknowledged_at"]), self.now, dict(row)

    def apply_voice(self, f: CustomerFacts, docs: list[tuple[datetime, dict[str, Any]]]) -> None:
        for at, doc in docs:
            fb = doc.get("feedback") or {}
            negative = False
            score: float | None = None
            if fb.get("nps") is not None:
                nps = int(fb["nps"])
                score = nps / 10
                if nps <= 6:
                    f.detractors += 1
                    negative = True
            elif fb.get("rating") is not None:
                scale = float(fb.get("rating_scale") or 5)
                score = float(fb["rating"]) / scale
                negative = score <= 0.4
            elif fb.get("csat") is not None:
                score = (int(fb["csat"]) - 1) / 4
                negative = int(fb["csat"]) <= 2
            if score is not None:
                f.scores.append(score)
            sentiment = fb.get("sentiment")
            if fb.get("text") and (
                (sentiment is not None and float(sentiment) <= NEGATIVE_SENTIMENT)
                or (negative and fb.get("nps") is None)
            ):
                f.negative_texts += 1
                negative = True
            if negative:
                for topic in fb.get("topics") or ():
                    f.topics[topic] = f.topics.get(topic, 0) + 1
                if f.last_negative_at is None or at > f.last_negative_at:
                    f.last_negative_at = at

    def apply_case(self, f: CustomerFacts, row: dict[str, Any]) -> None:
        status = row["status"]
        opened = _aware(row["opened_at"])
        if opened is not None and (f.last_negative_at is None or opened > f.last_negative_at):
            f.last_negative_at = opened
        if row.get("recovered"):
            f.recovered_cases += 1
        if status in ("new", "acknowledged"):
            f.open_cases += 1
            ack_due, resolve_due = _aware(row["ack_due_at"]), _aware(row["resolve_due_at"])
            late_ack = row["acknowledged_at"] is None and ack_due is not None and ack_due < self.now
            late_resolve = resolve_due is not None and resolve_due < self.now
            if late_ack or late_resolve:
                f.breached_cases += 1
        else:
            resolved, resolve_due = _aware(row["resolved_at"]), _aware(row["resolve_due_at"])
            if resolved is not None and resolve_due is not None and resolved > resolve_due:
                f.breached_cases += 1

    def batches(self) -> Iterator[list[CustomerFacts]]:
        """Every customer with a purchase, a voice touchpoint or a case, in customer order, in batches."""
        summaries = self.summaries()
        voice = self._voice()
        cases = self._cases()
        nxt_s = next(summaries, None)
        nxt_v = next(voice, None)
        nxt_c = next(cases, None)
        out: list[CustomerFacts] = []
        while nxt_s is not None or nxt_v is not None or nxt_c is not None:
            ids = [k for k in (nxt_s and nxt_s["customer_id"], nxt_v and nxt_v[0], nxt_c and nxt_c[0]) if k]
            cid = min(ids)
            if nxt_s is not None and nxt_s["customer_id"] == cid:
                f = self.history(nxt_s)
                nxt_s = next(summaries, None)
            else:
                f = CustomerFacts(customer_id=cid)
            docs: list[tuple[datetime, dict[str, Any]]] = []
            while nxt_v is not None and nxt_v[0] == cid:
                docs.append((nxt_v[1], nxt_v[2]))
                nxt_v = next(voice, None)
            self.apply_voice(f, docs)
            while nxt_c is not None and nxt_c[0] == cid:
                self.apply_case(f, nxt_c[4])
                nxt_c = next(cases, None)
            out.append(f)
            if len(out) >= self.batch:
                yield out
                out = []
        if out:
            yield out
