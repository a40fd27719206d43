"""The ingest pipeline: one code path for push and pull sources.

    raw records -> dedup on (source, external_id) -> mapping -> identity resolution -> store
                   (bad records -> quarantine with the reason; the batch goes on)

Everything of one batch commits in **one transaction**: the inbox rows, touchpoints, quarantine
rows, the source's new cursor state and whatever the ingest hooks (survey rules, feedback rules,
outbox writes) add. A crash re-reads at most that batch, and dedup absorbs it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, RootTransaction

from hub.errors import PayloadError
from hub.identity import IdentityResolver, Key
from hub.mapping import CompiledMapping
from hub.model import TouchpointEvent
from hub.privacy import Vault
from hub.sdk.collector import gc_checkpoint, gc_paused
from hub.sdk.connector import Batch, Clock, RawRecord, Rejected, utcnow
from hub.store import JsonText, Store, copy_deferred, copy_new_rows, dumps
from hub.store.cursors import save_state
from hub.store.schema import inbox, quarantine, touchpoints

if TYPE_CHECKING:
    from hub.store.pgcopy import DeferredCopy

log = logging.getLogger("cxhub.ingest")


@dataclass
class IngestContext:
    """What an ingest hook gets: the open transaction and the time of the batch."""

    conn: Connection
    now: datetime
    store: Store


class IngestHook(Protocol):
    """Runs inside the batch's transaction with the newly stored events (survey / feedback rules).

    A hook may set ``reads_touchpoints = False`` to say that it never reads this batch's
    touchpoint rows back in SQL (it works from the events it is given): when every hook says so,
    hooks run before those rows are written and a pull stream sends them last, unwaited
    (:meth:`Ingestor.ingest_stream`). Without it, a hook runs after the rows are written."""

    name: str

    def __call__(self, ctx: IngestContext, events: Sequence[TouchpointEvent]) -> None: ...


@dataclass
class IngestResult:
    """What one batch did."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    filtered: int = 0
    quarantined: int = 0
    events: list[TouchpointEvent] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.read += other.read
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.filtered += other.filtered
        self.quarantined += other.quarantined

    def summary(self) -> dict[str, int]:
        return {
            "read": self.read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "filtered": self.filtered,
            "quarantined": self.quarantined,
        }


@dataclass
class PreparedBatch:
    """A batch mapped and serialised by :meth:`Ingestor.prepare`, ready for :meth:`Ingestor.commit`."""

    source: str
    read: int = 0
    duplicates: int = 0
    inbox_rows: list[tuple[Any, ...]] = field(default_factory=list)  # in INBOX_COLUMNS order
    payloads: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, TouchpointEvent | str | None] = field(default_factory=dict)  # event / reason / filtered
    rejected: list[Rejected] = field(default_factory=list)
    #: the plain contacts behind the hashed identities (encrypted for identities seen first)
    contacts: dict[Key, str] = field(default_factory=dict)
    #: each stored event's JSON, serialised before its customer is known (``"customer_id":null``)
    docs: dict[str, str] = field(default_factory=dict)


@dataclass
class _InFlight:
    """A batch of :meth:`Ingestor.ingest_stream` whose transaction is open with everything sent,
    the touchpoints' COPY still being written by PostgreSQL; ``conn`` is None once committed."""

    batch: PreparedBatch
    state: dict[str, Any] | None
    result: IngestResult
    conn: Connection | None = None
    trans: RootTransaction | None = None
    copy: DeferredCopy | None = None


_NO_CUSTOMER = '"customer_id":null'


INBOX_COLUMNS = ("source", "external_id", "received_at", "status", "touchpoint_id", "payload")
TOUCHPOINT_COLUMNS = (
    "id",
    "source",
    "external_id",
    "kind",
    "channel",
    "occurred_at",
    "received_at",
    "customer_id",
    "store",
    "doc",
)


def _event_row(ev: TouchpointEvent, doc: str | None = None) -> tuple[Any, ...]:
    """The touchpoints row of ``ev``, in ``TOUCHPOINT_COLUMNS`` order."""
    cid = ev.customer.customer_id
    if doc is None:
        doc = ev.model_dump_json()
    elif cid is not None:
        # ``doc`` was serialised in prepare() with no customer. The customer's field is the first
        # ``"customer_id":null`` in it: only id, source, external_id, kind, channel, times and the
        # identities come before, all plain JSON strings, inside which a '"' is always escaped.
        head, found, tail = doc.partition(_NO_CUSTOMER)
        doc = f'{head}"customer_id":"{cid}"{tail}' if found else ev.model_dump_json()
    return (
        ev.id,
        ev.source,
        ev.external_id,
        ev.kind.value,
        ev.channel,
        ev.occurred_at,
        ev.received_at,
        cid,
        ev.org.store,
        JsonText(doc),
    )


def quarantine_row(
    source: str, external_id: str | None, stage: str, reason: str, payload: Any, now: datetime
) -> dict[str, Any]:
    """One open quarantine row (the row path, the columnar path and pushes that never parsed)."""
    return {
        "source": source,
        "external_id": external_id,
        "stage": stage,
        "reason": reason,
        "payload": payload,
        "created_at": now,
        "status": "open",
    }


def rejected_rows(source: str, rejected: Sequence[Rejected], now: datetime) -> list[dict[str, Any]]:
    """Quarantine rows of records a source could not read (stage ``parse``)."""
    return [
        quarantine_row(source, r.external_id, "parse", r.reason, _safe_payload(r.payload)[0], now) for r in rejected
    ]


def _safe_payload(payload: Any) -> tuple[Any, str | None]:
    """The payload as JSON text if it can be stored as JSON; otherwise its repr and the reason."""
    try:
        return JsonText(dumps(payload)), None
    except (TypeError, ValueError) as exc:
        return {"$repr": repr(payload)[:100_000]}, f"payload cannot be stored as JSON: {exc}"


class Ingestor:
    """Runs batches of raw records through mapping, identity and store."""

    def __init__(
        self,
        store: Store,
        secret_key: bytes,
        hooks: Sequence[IngestHook] = (),
        clock: Clock = utcnow,
        *,
        keep_raw: bool = False,
    ):
        self.store = store
        self.keep_raw = keep_raw
        self.identity = IdentityResolver(Vault(secret_key))
        self.hooks = list(hooks)
        self.clock = clock

    def ingest(
        self,
        source: str,
        mapping: CompiledMapping,
        records: Sequence[RawRecord],
        state: dict[str, Any] | None = None,
        rejected: Sequence[Rejected] = (),
    ) -> IngestResult:
        """Store one batch (and ``state``, when given) in one transaction; ``rejected`` items (the
        source could not parse them) go to quarantine in the same transaction."""
        with gc_paused():
            return self.commit(self.prepare(source, mapping, records, rejected), state)

    def ingest_stream(
        self,
        source: str,
        mapping: CompiledMapping,
        batches: Iterable[Batch],
        *,
        overlap: bool = True,
    ) -> Generator[IngestResult, None, None]:
        """Ingest ``batches`` in order, each with its state in one transaction (as :meth:`ingest`),
        one result per batch, with the cyclic GC paused for the whole stream, reading included: a
        batch being read, mapped and stored is tens of thousands of live objects that the
        collector would otherwise traverse again and again (see :func:`gc_paused`; it still
        collects every few seconds).

        With ``overlap``, on PostgreSQL, the stream overlaps the database with Python in one
        thread: batch N's touchpoints (the largest write, ~60% of PostgreSQL's work per event) are
        sent by ``COPY`` without waiting for PostgreSQL to store them; batch N+1 is read and mapped
        meanwhile; then N's COPY answer is read, N commits and its result is yielded. A source
        whose reads may wait long passes ``overlap=False``, so that no transaction stays open
        across them (``PullSource.overlap_commits``). Should the COPY or the commit fail (a
        touchpoint stored already, without its inbox row), N is rolled back and committed again
        the careful way (:meth:`commit`). A threaded writer was measured first and dropped: the
        interpreter lock serialised it with the mapping (+10-30 us CPU/event, no gain).

        A failed batch raises here and nothing after it is committed, so the source's committed
        state is that of the last batch yielded. If reading or mapping the next batch fails, the
        batch in flight is committed and yielded first, then the error is raised, as it was before
        the overlap.
        """
        with gc_paused():
            flight: _InFlight | None = None
            try:
                for batch in batches:
                    prepared = self.prepare(source, mapping, batch.records, batch.rejected)
                    if flight is not None:
                        done, flight = flight, None
                        yield self._land(done)
                    flight = self._launch(prepared, batch.state, overlap)
                    if flight.conn is None:  # committed at once (SQLite, a small batch)
                        done, flight = flight, None
                        yield done.result
                    gc_checkpoint()
                if flight is not None:
                    done, flight = flight, None
                    yield self._land(done)
            except Exception:
                if flight is not None:  # reading or mapping the next batch failed: land this one first
                    done, flight = flight, None
                    yield self._land(done)
                raise
            finally:
                if flight is not None and flight.conn is not None:  # never at a yield; defensive
                    with contextlib.suppress(Exception):
                        flight.conn.invalidate()  # drops the open transaction with the connection

    def _launch(self, batch: PreparedBatch, state: dict[str, Any] | None, overlap: bool = True) -> _InFlight:
        """Everything of :meth:`commit`, the touchpoints' COPY sent but not waited for (PostgreSQL;
        elsewhere, or for a small batch, committed at once)."""
        conn = self.store.engine.connect()
        try:
            trans = conn.begin()
            result, copy = self._commit_in(conn, batch, state, defer=overlap)
            if copy is None:
                trans.commit()
                conn.close()
                return _InFlight(batch, state, result)
        except BaseException:
            conn.close()  # rolls the transaction back
            raise
        return _InFlight(batch, state, result, conn, trans, copy)

    def _land(self, flight: _InFlight) -> IngestResult:
        """Read the in-flight COPY's answer and commit; on failure, redo the batch with :meth:`commit`."""
        if flight.conn is None:
            return flight.result
        assert flight.trans is not None and flight.copy is not None
        try:
            flight.copy.wait()
            flight.trans.commit()
        except Exception as exc:
            log.info("a %s batch failed to commit (%s): storing it again the careful way", flight.batch.source, exc)
            with contextlib.suppress(Exception):
                flight.trans.rollback()
            flight.conn.close()
            return self.commit(flight.batch, flight.state)
        flight.conn.close()
        return flight.result

    def prepare(
        self,
        source: str,
        mapping: CompiledMapping,
        records: Sequence[RawRecord],
        rejected: Sequence[Rejected] = (),
    ) -> PreparedBatch:
        """The CPU half of ingest (mapping, serialisation), touching no database, so that it runs
        before the transaction opens and the transaction stays short."""
        batch = PreparedBatch(source=source, rejected=list(rejected), read=len(records) + len(rejected))
        unique: dict[str, RawRecord] = {}
        for rec in records:
            if rec.external_id in unique:
                batch.duplicates += 1
            else:
                unique[rec.external_id] = rec
        keep_raw = self.keep_raw
        protect = self.identity.protect
        for ext, rec in unique.items():
            outcome: TouchpointEvent | str | None
            try:
                outcome = mapping.apply(rec.payload, source=source, external_id=ext, received_at=rec.received_at)
            except PayloadError as exc:
                outcome = str(exc)
            payload: Any = None
            if keep_raw or not isinstance(outcome, TouchpointEvent):
                # serialised only when it is kept: quarantined (for replay) or with keep_raw_payloads
                payload, bad = _safe_payload(rec.payload)
                if bad:
                    outcome = bad if not isinstance(outcome, str) else f"{outcome}; {bad}"
                batch.payloads[ext] = payload
            if isinstance(outcome, TouchpointEvent):
                # hashing identities and serialising need no database: done here, before the
                # transaction opens
                batch.contacts.update(protect(outcome))
                batch.docs[ext] = outcome.model_dump_json()
            batch.outcomes[ext] = outcome
            status = (
                "stored" if isinstance(outcome, TouchpointEvent) else "filtered" if outcome is None else "quarantined"
            )
            batch.inbox_rows.append(
                (
                    source,
                    ext,
                    rec.received_at,
                    status,
                    outcome.id if isinstance(outcome, TouchpointEvent) else None,
                    payload if keep_raw else None,
                )
            )
        return batch

    def commit(self, batch: PreparedBatch, state: dict[str, Any] | None = None) -> IngestResult:
        """The database half: dedup, quarantine, identity, hooks, touchpoints and ``state``, in one
        transaction."""
        with self.store.begin() as conn:
            return self._commit_in(conn, batch, state, defer=False)[0]

    def _commit_in(
        self, conn: Connection, batch: PreparedBatch, state: dict[str, Any] | None, *, defer: bool
    ) -> tuple[IngestResult, DeferredCopy | None]:
        source = batch.source
        result = IngestResult(read=batch.read, duplicates=batch.duplicates)
        now = self.clock()
        fresh: set[str] = set()
        if batch.inbox_rows:
            # new as a rule (a key repeats on retries and re-reads): COPY, falling back to
            # insert-ignore when one exists
            inserted = copy_new_rows(
                conn, inbox, batch.inbox_rows, ["source", "external_id"], ["external_id"], columns=INBOX_COLUMNS
            )
            fresh = {r[0] for r in inserted}
        result.duplicates += len(batch.inbox_rows) - len(fresh)
        events: list[TouchpointEvent] = []
        q_rows = []
        for row in batch.inbox_rows:
            ext = row[1]
            if ext not in fresh:
                continue
            outcome = batch.outcomes[ext]
            if isinstance(outcome, TouchpointEvent):
                events.append(outcome)
            elif outcome is None:
                result.filtered += 1
            else:
                q_rows.append(quarantine_row(source, ext, "mapping", outcome, batch.payloads[ext], now))
        q_rows += rejected_rows(source, batch.rejected, now)
        if q_rows:
            conn.execute(quarantine.insert(), q_rows)
            result.quarantined = len(q_rows)
        if state is not None:
            save_state(conn, source, state, now)
        copy = self._store_events(conn, events, now, batch.contacts, batch.docs, defer=defer)
        result.stored = len(events)
        result.events = events
        return result, copy

    def _store_events(
        self,
        conn: Connection,
        events: list[TouchpointEvent],
        now: datetime,
        contacts: dict[Key, str] | None = None,
        docs: dict[str, str] | None = None,
        *,
        defer: bool = False,
    ) -> DeferredCopy | None:
        """``contacts`` / ``docs``: from prepare() (identities already hashed, events serialised).
        ``defer``: on PostgreSQL, send the touchpoints' COPY last and return it unwaited."""
        if not events:
            return None
        self.identity.resolve(conn, events, now, contacts)
        ctx = IngestContext(conn=conn, now=now, store=self.store)
        # hooks that never read this batch's touchpoint rows back run before those rows are
        # written, so that the touchpoints' COPY can be the transaction's last statement, the one
        # ingest_stream does not wait for; any other hook runs after them
        early = all(not getattr(hook, "reads_touchpoints", True) for hook in self.hooks)
        if early:
            for hook in self.hooks:
                hook(ctx, events)
        # an event here claimed its inbox row in this transaction, so its id (derived from the same
        # source and external id) is new: COPY straight in (falls back to insert-ignore if not)
        rows = [_event_row(ev, docs.get(ev.external_id) if docs else None) for ev in events]
        if early and defer and conn.dialect.name == "postgresql" and len(rows) >= 16:
            return copy_deferred(conn, touchpoints, rows, TOUCHPOINT_COLUMNS)
        copy_new_rows(conn, touchpoints, rows, ["id"], columns=TOUCHPOINT_COLUMNS)
        if not early:
            for hook in self.hooks:
                hook(ctx, events)
        return None

    def quarantine_raw(self, source: str, external_id: str | None, payload: Any, reason: str, stage: str) -> int:
        """Quarantine something that never reached mapping (a verified body that fails to parse)."""
        payload, bad = _safe_payload(payload)
        with self.store.begin() as conn:
            res = conn.execute(
                quarantine.insert().returning(quarantine.c.id),
                quarantine_row(source, external_id, stage, reason + (f"; {bad}" if bad else ""), payload, self.clock()),
            )
            return int(res.scalar_one())
