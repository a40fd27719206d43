"""The columnar ingest: batches of Arrow records -> stored touchpoints, with the row path's results.

Per batch, as the row path (:class:`hub.ingest.Ingestor`) does, in one transaction: dedup on
(source, external id) through the inbox, quarantine with the reason, the cursor state, identity
resolution, the touchpoints, the ingest hooks. What differs is how:

- mapping is vectorised (:mod:`hub.columnar.vector`); records it flags go through the row path's
  own ``prepare`` (mapping, reason), so a quarantined record carries the row path's reason;
- identities are hashed once per distinct value, and resolved by the row path's resolver in one
  set-based lookup per batch (same merges, same scopes, same survivors);
- rows go to PostgreSQL as ``COPY`` text built by Polars column by column; dedup is an optimistic
  ``COPY`` into the inbox inside a savepoint, and when a key exists already (a re-read, a
  lookback), a staging table and ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``;
- reading, mapping and writing overlap: a reader thread fetches the next batches (a bounded queue:
  back-pressure), the main thread maps, a writer thread commits the previous batch. Arrow, Polars
  and the database drivers release the interpreter lock for their work.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import queue
import threading
import typing
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
from pydantic import AwareDatetime
from sqlalchemy import Connection, Table, text

from hub.columnar.identities import IdentityColumns, resolve_columns
from hub.columnar.records import from_nested, from_rows
from hub.columnar.vector import (
    _CONTROL,
    ArrowRecords,
    Mapped,
    Unsupported,
    VectorMapping,
    _adapter,
    _json_str,
    compile_vector,
    const,
    json_text,
)
from hub.identity import Key
from hub.ingest import Ingestor, IngestResult, PreparedBatch, _event_row, quarantine_row, rejected_rows
from hub.mapping import CompiledMapping
from hub.model import TOUCHPOINT_NAMESPACE, TouchpointEvent
from hub.privacy import SENSITIVE_NAMESPACES
from hub.sdk.columns import ColumnBatch
from hub.sdk.connector import Batch, PullSource, RawRecord, Rejected
from hub.store import bulk_insert_ignore
from hub.store.cursors import save_state
from hub.store.schema import inbox, quarantine, touchpoints

log = logging.getLogger("cxhub.columnar")


def columnar_plan(source: PullSource, mapping: CompiledMapping, ingestor: Ingestor) -> tuple[VectorMapping | None, str]:
    """The vector mapping a sync of ``source`` runs with, or None and why it takes the row path."""
    return plan(type(source), getattr(source, "options", None), mapping, keep_raw=ingestor.keep_raw)


def plan(
    connector: type[Any], options: Any, mapping: CompiledMapping | None, *, keep_raw: bool
) -> tuple[VectorMapping | None, str]:
    """:func:`columnar_plan` from a source's connector class, options and mapping (``cxhub check``)."""
    if not getattr(connector, "columnar", False):
        return None, f"the {getattr(connector, 'kind', '?')} connector hands over records one at a time"
    if options is not None and getattr(options, "columnar", True) is False:
        return None, "columnar: false in the source's options"
    return mapping_plan(mapping, keep_raw=keep_raw)


def mapping_plan(mapping: CompiledMapping | None, *, keep_raw: bool) -> tuple[VectorMapping | None, str]:
    """The vector form of ``mapping``, or None and why its records take the row path (whatever
    hands them over: a pull source, a burst of pushes)."""
    if keep_raw:
        return None, "store.keep_raw_payloads keeps each raw payload, which the row path writes"
    if mapping is None:
        return None, "no mapping"
    try:
        return compile_vector(mapping), "columnar"
    except Unsupported as exc:
        return None, f"mapping {mapping.name!r}: {exc}"


# ---------------------------------------------------------------- what prepare makes


@dataclass
class _Ident:
    namespace: str
    value: str
    scope: str | None = None


@dataclass
class _Customer:
    identities: list[_Ident]
    customer_id: str | None = None


@dataclass
class _Event:
    """What identity resolution reads and writes of an event (the columnar rows have no model)."""

    customer: _Customer


@dataclass
class PreparedColumnar:
    source: str
    received_at: datetime
    read: int
    duplicates: int
    #: the records mapped here (batch order): index, external id, touchpoint id, columns, doc parts
    ok: pl.DataFrame
    #: per identity namespace, each mapped record's value (hashed where sensitive; null: none)
    identities: list[tuple[str, pl.Series, pl.Series]]
    contacts: dict[Key, str]
    filtered: list[str]
    #: the records the row path decided (flagged), prepared by it
    fallback: PreparedBatch
    fallback_index: dict[str, int]
    rejected: list[Rejected] = field(default_factory=list)
    #: each record's receipt time (batch order), when they differ; None: all ``received_at``
    received: pl.Series | None = None
    #: the batch index of each of ``filtered``
    filtered_index: list[int] = field(default_factory=list)


def _copy_text(values: pl.Series) -> pl.Series:
    """Text for PostgreSQL's COPY text format (backslash, tab, newline, carriage return escaped).
    A column with none of them (most: JSON text has no raw control characters) is kept as it is."""
    if not values.str.contains(r"[\\\t\n\r]").any():
        return values
    return (
        values.str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all("\t", "\\t", literal=True)
        .str.replace_all("\n", "\\n", literal=True)
        .str.replace_all("\r", "\\r", literal=True)
    )


def _copy_time(values: pl.Series) -> pl.Series:
    return values.dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%d %H:%M:%S%.6f+00")


def _identity_lists(batch: PreparedColumnar, mask: pl.Series | None = None) -> IdentityColumns:
    """The batch's identity columns as lists (only the rows ``mask`` keeps, when given)."""
    if mask is None:
        return [(ns, values.to_list(), scopes.to_list()) for ns, values, scopes in batch.identities]
    return [
        (ns, values.filter(mask).to_list(), scopes.filter(mask).to_list()) for ns, values, scopes in batch.identities
    ]


class ColumnarIngest:
    """The columnar path of one :class:`Ingestor` (its store, vault, hooks and clock)."""

    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor
        self.store = ingestor.store
        self.vault = ingestor.identity.vault
        self._received_json: dict[datetime, str] = {}

    # ------------------------------------------------------------ the CPU half

    def prepare(self, source: str, mapping: CompiledMapping, vm: VectorMapping, batch: ColumnBatch) -> PreparedColumnar:
        records = ArrowRecords(
            batch.table,
            batch.children,
            batch.present,
            batch.numeric,
            batch.payloads,
            batch.opaque,
            batch.load_payloads,
        )
        n = batch.table.num_rows
        mapped: Mapped = vm.map(records)
        times = (
            typing.cast(pl.Series, pl.from_arrow(batch.received)).dt.convert_time_zone("UTC")
            if batch.received is not None
            else None
        )
        # the batch as one frame; a record counts once, at its id's first record (later: duplicates)
        frame = pl.DataFrame(
            [
                typing.cast(pl.Series, pl.from_arrow(batch.ids)).cast(pl.String).alias("external_id"),
                mapped.status.alias("status"),
                mapped.head.alias("head"),
                mapped.tail.alias("tail"),
                *mapped.columns.get_columns(),
                *[values.alias(f"value{k}") for k, (_, values, _) in enumerate(mapped.identities)],
                *[
                    (scopes if scopes is not None else const(None, n, pl.String)).alias(f"scope{k}")
                    for k, (_, _, scopes) in enumerate(mapped.identities)
                ],
                *([times.alias("received_at")] if times is not None else []),
            ]
        )
        ext = pl.col("external_id")
        first = ext.is_first_distinct() & ext.is_not_null()
        status = pl.col("status")
        ok = first & (status == "ok")
        index = pl.col("index")
        sensitive = [k for k, (ns, _, _) in enumerate(mapped.identities) if ns in SENSITIVE_NAMESPACES]
        # what Python needs (which records go where, the values to hash), in one query
        frame = frame.with_row_index("index")
        found = frame.select(
            usable=ext.is_not_null().sum(),
            duplicates=(ext.is_not_null() & ~first).sum(),
            row=index.filter(first & (status == "row")).implode(),
            filtered=index.filter(first & (status == "filtered")).implode(),
            ok_ids=ext.filter(ok).implode(),
            odd_ids=ext.filter(ok).str.contains(_CONTROL).any(),
            times=pl.col("received_at").filter(ok).unique().implode() if times is not None else pl.lit(None),
            **{
                f"pairs{k}": pl.struct(pl.col(f"value{k}"), pl.col(f"scope{k}"))
                .filter(ok & pl.col(f"value{k}").is_not_null())
                .unique()
                .implode()
                for k in sensitive
            },
        ).row(0, named=True)
        ext_list: list[str] = found["ok_ids"]
        # the records the row path decides: through its own prepare (mapping, reason, contacts, docs)
        row_idx: list[int] = found["row"]
        filtered_index: list[int] = found["filtered"]
        ext_all = frame["external_id"].gather(row_idx + filtered_index).to_list()
        payload_of = records.all_payloads().__getitem__ if len(row_idx) > 16 else records.payload
        time_list = times.gather(row_idx).to_list() if times is not None else None
        fallback = self.ingestor.prepare(
            source,
            mapping,
            [
                RawRecord(source, ext_all[j], payload_of(i), time_list[j] if time_list else batch.received_at)
                for j, i in enumerate(row_idx)
            ],
        )
        fallback_index = {ext_all[j]: i for j, i in enumerate(row_idx)}
        filtered = ext_all[len(row_idx) :]
        # identities: hashed once per distinct value, the plain contact kept for encryption
        contacts: dict[Key, str] = {}
        hashed: dict[int, dict[str, str]] = {}
        for k in sensitive:
            ns = mapped.identities[k][0]
            hashes = hashed[k] = {}
            for pair in found[f"pairs{k}"]:
                v, sc = pair[f"value{k}"], pair[f"scope{k}"]
                h = hashes.get(v)
                if h is None:
                    h = hashes[v] = v if v.startswith("h:") else self.vault.hash(ns, v)
                if not v.startswith("h:"):
                    contacts[(ns, sc or "", h)] = v
        idents: dict[str, pl.Expr] = {}
        pieces: list[pl.Expr] = []
        for k, (ns, _, _) in enumerate(mapped.identities):
            value = pl.col(f"value{k}")
            if hashed.get(k):
                value = value.replace(list(hashed[k]), list(hashed[k].values()))
            idents[f"value{k}"] = value
            scope = pl.col(f"scope{k}")
            pieces.append(
                pl.when(value.is_not_null()).then(
                    pl.concat_str(
                        [
                            pl.lit(f'{{"namespace":{orjson.dumps(ns).decode()},"value":'),
                            _json_str(value),
                            pl.lit(',"scope":'),
                            _json_str(scope).fill_null(pl.lit("null")),
                            pl.lit("}"),
                        ]
                    )
                )
            )
        ident_arrays = (
            pl.concat_str([pl.lit("["), pl.concat_str(pieces, separator=",", ignore_nulls=True), pl.lit("]")])
            if pieces
            else pl.lit("[]")
        )
        if times is None:
            received = pl.lit(self._received(batch.received_at))
        else:  # each record's own receipt time
            as_json = {t: self._received(t) for t in found["times"]}
            received = pl.col("received_at").replace_strict(
                list(as_json), list(as_json.values()), return_dtype=pl.String
            )
        # the text of each external id as JSON (a control character, rarely: orjson's escape)
        ext_json = _json_str(ext)
        if found["odd_ids"]:
            ext_json = pl.lit(json_text(pl.Series(ext_list, dtype=pl.String)))
        src_json = orjson.dumps(source).decode()
        ok_frame = (
            frame.lazy()
            .filter(ok)
            .with_columns(id=_touchpoint_ids(source, ext_list), **idents)
            .select(
                "index",
                "external_id",
                "id",
                "kind",
                "channel",
                "occurred_at",
                "store",
                pl.concat_str(
                    [
                        pl.lit('{"id":"'),
                        pl.col("id"),
                        pl.lit(f'","source":{src_json},"external_id":'),
                        ext_json,
                        pl.lit(","),
                        pl.col("head"),
                        pl.lit(',"received_at":'),
                        received,
                        pl.lit(',"customer":{"identities":'),
                        ident_arrays,
                        pl.lit(',"customer_id":'),
                    ]
                ).alias("pre"),
                "tail",
                *idents,
                *[f"scope{k}" for k in range(len(mapped.identities))],
            )
            .collect()
        )
        ident_cols = [
            (ns, ok_frame[f"value{k}"], ok_frame[f"scope{k}"]) for k, (ns, _, _) in enumerate(mapped.identities)
        ]
        ok_frame = ok_frame.drop([*idents, *[f"scope{k}" for k in range(len(mapped.identities))]])
        return PreparedColumnar(
            source=source,
            received_at=batch.received_at,
            read=found["usable"] + len(batch.rejected),
            duplicates=found["duplicates"],
            ok=ok_frame,
            identities=ident_cols,
            contacts=contacts,
            filtered=filtered,
            fallback=fallback,
            fallback_index=fallback_index,
            rejected=list(batch.rejected),
            received=times,
            filtered_index=filtered_index,
        )

    def _received(self, at: datetime) -> str:
        found = self._received_json.get(at)
        if found is None:
            found = _adapter(AwareDatetime).dump_json(at.astimezone(UTC)).decode()
            self._received_json = {at: found}
        return found

    # ------------------------------------------------------------ the database half

    def commit(self, batch: PreparedColumnar, state: dict[str, Any] | None) -> IngestResult:
        with self.store.begin() as conn:
            return self._commit_in(conn, batch, state)

    def _commit_in(
        self,
        conn: Connection,
        batch: PreparedColumnar,
        state: dict[str, Any] | None,
        before_hooks: Callable[[], None] | None = None,
    ) -> IngestResult:
        """The database half, in ``conn``'s transaction; ``before_hooks`` runs once the batch is
        written and before the features' hooks see it."""
        source = batch.source
        result = IngestResult(read=batch.read, duplicates=batch.duplicates + batch.fallback.duplicates)
        now = self.ingestor.clock()
        ok = batch.ok
        fb = batch.fallback
        # the inbox: every record of the batch, deduplicated against what is stored
        n_ok = ok.height
        inbox_frame = pl.DataFrame(
            {
                "external_id": pl.concat(
                    [
                        ok["external_id"],
                        pl.Series(batch.filtered, dtype=pl.String),
                        pl.Series([r[1] for r in fb.inbox_rows], dtype=pl.String),
                    ]
                ),
                "status": (["stored"] * n_ok) + (["filtered"] * len(batch.filtered)) + [r[3] for r in fb.inbox_rows],
                "touchpoint_id": pl.concat(
                    [
                        ok["id"],
                        pl.Series([None] * len(batch.filtered), dtype=pl.String),
                        pl.Series([r[4] for r in fb.inbox_rows], dtype=pl.String),
                    ]
                ),
            }
        )
        if batch.received is not None:  # each record's own receipt time
            inbox_frame = inbox_frame.with_columns(
                received_at=pl.concat(
                    [
                        batch.received.gather(ok["index"]),
                        batch.received.gather(batch.filtered_index),
                        pl.Series([r[2] for r in fb.inbox_rows], dtype=pl.Datetime("us", "UTC")),
                    ]
                )
            )
        # in key order: two writers claiming the same keys wait for each other, never deadlock
        fresh = self._claim_inbox(conn, source, batch.received_at, inbox_frame.sort("external_id"))
        all_fresh = fresh is None
        if fresh is not None:
            result.duplicates += inbox_frame.height - len(fresh)
            ok = ok.filter(pl.col("external_id").is_in(pl.Series(list(fresh), dtype=pl.String).implode()))
        claimed: set[str] = fresh or set()
        result.filtered = len([e for e in batch.filtered if all_fresh or e in claimed])
        result.filtered += len([r for r in fb.inbox_rows if r[3] == "filtered" and (all_fresh or r[1] in claimed)])
        # quarantine: the row path's reasons, and what the source could not read
        q_rows: list[dict[str, Any]] = []
        fb_events: list[tuple[int, TouchpointEvent]] = []
        for row in fb.inbox_rows:
            ext = row[1]
            if not all_fresh and ext not in claimed:
                continue
            outcome = fb.outcomes[ext]
            if isinstance(outcome, TouchpointEvent):
                fb_events.append((batch.fallback_index[ext], outcome))
            elif isinstance(outcome, str):
                q_rows.append(quarantine_row(source, ext, "mapping", outcome, fb.payloads[ext], now))
        q_rows += rejected_rows(source, batch.rejected, now)
        if q_rows:
            conn.execute(quarantine.insert(), q_rows)
            result.quarantined = len(q_rows)
        if state is not None:
            save_state(conn, source, state, now)
        # identities: one set-based resolution for the batch (the row path's resolver when it merges)
        keep = ok["index"].to_list()
        cols = _identity_lists(batch, None if all_fresh else batch.ok["index"].is_in(ok["index"].implode()))
        contacts = dict(batch.contacts)
        contacts.update(fb.contacts)
        resolved: list[str | None] | None = None
        if not fb_events and not cols:  # a mapping without identities: no customer
            resolved = [None] * len(keep)
        elif not fb_events:
            resolved = resolve_columns(
                conn,
                self.ingestor.identity,
                cols,
                contacts,
                now,
                _write_frame,
            )
        if resolved is None:
            light = (
                [
                    _Event(
                        _Customer(
                            [
                                _Ident(ns, v, sc)
                                for (ns, _, _), (v, sc) in zip(cols, pairs, strict=True)
                                if v is not None
                            ]
                        )
                    )
                    for pairs in zip(*(zip(values, scopes, strict=True) for _, values, scopes in cols), strict=True)
                ]
                if cols
                else [_Event(_Customer([])) for _ in keep]
            )
            by_index: dict[int, Any] = dict(zip(keep, light, strict=True))
            for i, fev in fb_events:
                by_index[i] = fev
            ordered = [by_index[i] for i in sorted(by_index)]
            if ordered:
                self.ingestor.identity.resolve(conn, ordered, now, contacts)
            resolved = [ev.customer.customer_id for ev in light]
        cids = pl.Series(resolved, dtype=pl.String)
        docs = pl.select(
            pl.concat_str(
                [
                    pl.lit(ok["pre"]),
                    pl.when(pl.lit(cids).is_null())
                    .then(pl.lit("null"))
                    .otherwise(pl.concat_str([pl.lit('"'), pl.lit(cids), pl.lit('"')])),
                    pl.lit(ok["tail"]),
                ]
            )
        ).to_series()
        tp = pl.DataFrame(
            {
                "id": ok["id"],
                "source": const(source, ok.height, pl.String),
                "external_id": ok["external_id"],
                "kind": ok["kind"],
                "channel": ok["channel"],
                "occurred_at": ok["occurred_at"],
                "received_at": batch.received.gather(ok["index"])
                if batch.received is not None
                else const(batch.received_at, ok.height).dt.convert_time_zone("UTC")
                if ok.height
                else pl.Series([], dtype=pl.Datetime("us", "UTC")),
                "customer_id": cids,
                "store": ok["store"],
                "doc": docs,
            }
        )
        fb_rows = [_event_row(ev, fb.docs.get(ev.external_id)) for _, ev in fb_events]
        self._write_touchpoints(conn, tp, fb_rows)
        result.stored = ok.height + len(fb_events)
        if before_hooks is not None:
            before_hooks()
        hooks = self.ingestor.hooks
        if hooks and result.stored:
            from hub.ingest import IngestContext

            events_by_index = {i: ev for i, ev in fb_events}
            for i, doc in zip(keep, docs.to_list(), strict=True):
                events_by_index[i] = TouchpointEvent.model_validate_json(doc)
            events = [events_by_index[i] for i in sorted(events_by_index)]
            ctx = IngestContext(conn=conn, now=now, store=self.store)
            for hook in hooks:
                hook(ctx, events)
            result.events = events
        return result

    def _claim_inbox(
        self, conn: Connection, source: str, received_at: datetime, frame: pl.DataFrame
    ) -> set[str] | None:
        """Insert the batch's inbox rows; the external ids inserted, or None when all of them were.
        ``frame``: external_id, status, touchpoint_id and, when the records' differ, received_at."""
        if frame.height == 0:
            return None
        each = "received_at" in frame.columns
        if conn.dialect.name != "postgresql":
            rows = [
                {
                    "source": source,
                    "external_id": r[0],
                    "received_at": r[3] if each else received_at,
                    "status": r[1],
                    "touchpoint_id": r[2],
                    "payload": None,
                }
                for r in frame.iter_rows()
            ]
            inserted = bulk_insert_ignore(conn, inbox, rows, ["source", "external_id"], ["external_id"])
            got = {r[0] for r in inserted}
            return None if len(got) == frame.height else got
        text_frame = pl.DataFrame(
            {
                "source": const(_copy_one(source), frame.height, pl.String),
                "external_id": _copy_text(frame["external_id"]),
                "received_at": _copy_time(frame["received_at"])
                if each
                else const(_copy_stamp(received_at), frame.height, pl.String),
                "status": frame["status"],
                "touchpoint_id": frame["touchpoint_id"],
            }
        )
        from psycopg.errors import UniqueViolation

        try:
            with conn.begin_nested():
                _copy(conn, "inbox", text_frame)
            return None
        except Exception as exc:  # a key stored already: through a staging table
            if not isinstance(getattr(exc, "orig", exc), UniqueViolation) and not isinstance(exc, UniqueViolation):
                raise
        conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS cxhub_inbox_stage "
                "(source varchar(64), external_id varchar(512), received_at timestamptz, status varchar(16), "
                "touchpoint_id varchar(36)) ON COMMIT DELETE ROWS"
            )
        )
        _copy(conn, "cxhub_inbox_stage", text_frame)
        res = conn.execute(
            text(
                "INSERT INTO inbox (source, external_id, received_at, status, touchpoint_id) "
                "SELECT DISTINCT ON (external_id) source, external_id, received_at, status, touchpoint_id "
                "FROM cxhub_inbox_stage ON CONFLICT (source, external_id) DO NOTHING RETURNING external_id"
            )
        )
        got = {r[0] for r in res}
        conn.execute(text("TRUNCATE cxhub_inbox_stage"))
        return got

    def _write_touchpoints(self, conn: Connection, tp: pl.DataFrame, extra: list[tuple[Any, ...]]) -> None:
        cols = ["id", "source", "external_id", "kind", "channel", "occurred_at", "received_at", "customer_id", "store"]
        if conn.dialect.name != "postgresql":
            rows = [dict(zip([*cols, "doc"], r, strict=True)) for r in tp.iter_rows()]
            from hub.store import JsonText

            for r in rows:
                r["doc"] = JsonText(r["doc"])
            rows += [dict(zip([*cols, "doc"], r, strict=True)) for r in extra]
            if rows:
                conn.execute(touchpoints.insert(), rows)
            return
        frames = []
        if tp.height:
            frames.append(
                pl.DataFrame(
                    {
                        "id": tp["id"],
                        "source": _copy_text(tp["source"]),
                        "external_id": _copy_text(tp["external_id"]),
                        "kind": tp["kind"],
                        "channel": _copy_text(tp["channel"]),
                        "occurred_at": _copy_time(tp["occurred_at"]),
                        "received_at": _copy_time(tp["received_at"]),
                        "customer_id": tp["customer_id"],
                        "store": _copy_text(tp["store"]),
                        "doc": _copy_text(tp["doc"]),
                    }
                )
            )
        if extra:
            ex = pl.DataFrame([list(r) for r in extra], schema=[*cols, "doc"], orient="row")
            frames.append(
                pl.DataFrame(
                    {
                        "id": ex["id"].cast(pl.String),
                        "source": _copy_text(ex["source"].cast(pl.String)),
                        "external_id": _copy_text(ex["external_id"].cast(pl.String)),
                        "kind": ex["kind"].cast(pl.String),
                        "channel": _copy_text(ex["channel"].cast(pl.String)),
                        "occurred_at": _copy_time(ex["occurred_at"]),
                        "received_at": _copy_time(ex["received_at"]),
                        "customer_id": ex["customer_id"].cast(pl.String),
                        "store": _copy_text(ex["store"].cast(pl.String)),
                        "doc": _copy_text(ex["doc"].cast(pl.String)),
                    }
                )
            )
        if frames:
            _copy(conn, "touchpoints", pl.concat(frames))

    # ------------------------------------------------------------ the stream

    def ingest_stream(
        self,
        source: str,
        mapping: CompiledMapping,
        vm: VectorMapping,
        batches: Iterable[ColumnBatch | Batch],
        *,
        prefetch: int = 1,
    ) -> Generator[IngestResult, None, None]:
        """Ingest ``batches`` in order, each with its state in one transaction; one result per batch.

        Reading runs ahead in a thread (at most ``prefetch`` batches waiting: back-pressure), and
        batches commit in writer threads while the next one is mapped. On PostgreSQL two columnar
        batches are written at once, each in its own transaction, and commit in order
        (:meth:`_commit_ordered`): the store's two backends work side by side. A failed commit
        raises here and nothing after it is committed; if reading or mapping fails, the batches
        in flight are committed and yielded first."""
        reader = _Prefetch(iter(batches), prefetch)
        depth = WRITERS if self.store.engine.dialect.name == "postgresql" else 1
        pool = ThreadPoolExecutor(depth, thread_name_prefix="cxhub-columnar-write")
        flights: deque[_Flight] = deque()
        lists = [lst.field for lst in vm.lists]
        try:
            for item in reader:
                columns: Any = item
                if isinstance(item, ColumnBatch) and item.nested:  # (JSON lines): laid out as row records are
                    columns = from_nested(item, lists)
                    if columns is None:
                        item = item.row_batch()
                if isinstance(item, Batch):
                    columns = from_rows(item, lists)
                if columns is None:  # the row path takes this batch whole, after what is in flight
                    log.debug("%s: a batch of %d records by the row path", source, len(item.records))
                    row_batch = self.ingestor.prepare(source, mapping, item.records, item.rejected)
                    while flights:
                        yield from self._landed(flights)
                    flight = _Flight(None, item.state, None, row=True)
                    flight.future = pool.submit(self.ingestor.commit, row_batch, item.state)
                    flights.append(flight)
                    continue
                prepared = self.prepare(source, mapping, vm, columns)
                state, item, columns = item.state, None, None  # the columns are not needed any more
                log.debug(
                    "%s: a batch of %d records as columns, %d of them decided by the row path",
                    source,
                    prepared.read,
                    len(prepared.fallback_index),
                )
                while flights and (len(flights) >= depth or flights[-1].row):
                    yield from self._landed(flights)
                flight = _Flight(prepared, state, flights[-1] if flights else None)
                flight.future = pool.submit(self._commit_ordered, flight)
                flights.append(flight)
            while flights:
                yield from self._landed(flights)
        except Exception:
            while flights:  # what was mapped before the failure is committed and yielded first
                yield from self._landed(flights)
            raise
        finally:
            reader.close()
            _settle(flights)
            pool.shutdown(wait=True)

    def _commit_ordered(self, flight: _Flight) -> IngestResult | None:
        """Write ``flight``'s batch in a transaction of its own, then, once the batch before it
        has committed, run the features' hooks and commit; None when it must be committed again on
        its own (the batch before failed, or the two waited on each other's rows: see
        :func:`_lock_conflict`).

        Two batches in flight may store the same keys (a record, a new identity): the second
        waits in PostgreSQL for the first to end, then takes the path for keys stored already.
        Each transaction waits for a lock at most ``LOCK_WAIT_MS``: should the first ever wait on
        a row the second holds while the second waits for the first's commit here, the first's
        wait ends, both roll back, and :meth:`_landed` commits them again one after the other."""
        batch = flight.prepared
        assert batch is not None
        try:
            with self.store.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")
                before, flight.before = flight.before, None  # no chain of every batch before it

                def after_before() -> None:
                    # the features' hooks (caps, cases, locks per customer) see the batch before
                    # committed, as one writer would show it to them
                    if before is not None:
                        before.done.wait()
                        if not before.committed:
                            raise _Again

                result = self._commit_in(conn, batch, None, after_before)
                if flight.state is not None:  # the cursor row last: the batch before wrote it first
                    save_state(conn, batch.source, flight.state, self.ingestor.clock())
            flight.committed = True
            return result
        except _Again:
            return None
        except Exception as exc:
            if _lock_conflict(exc):
                log.info("%s: a batch waited on the batch beside it; committing it again alone", batch.source)
                return None
            raise
        finally:
            flight.done.set()

    def _landed(self, flights: deque[_Flight]) -> Iterator[IngestResult]:
        """The result of the oldest batch in flight (committed again alone if it has to be)."""
        flight = flights.popleft()
        try:
            result = flight.future.result()
        except Exception:
            # failed: the batches after it roll back (they wait for its commit), and none is
            # committed again
            _settle(flights)
            flights.clear()
            raise
        if result is not None:
            flight.prepared = None
            yield result
            return
        # rolled back: so are the batches after it (they wait for its commit); once they have
        # ended, each is committed again, in order, alone
        again = [flight, *flights]
        _settle(flights)
        flights.clear()
        for one in again:
            assert one.prepared is not None
            yield self.commit(one.prepared, one.state)


#: columnar batches written at once on PostgreSQL, each in its own transaction, committed in order
WRITERS = 2
#: the longest a columnar batch written beside another waits for a lock before both are committed
#: again one after the other (ms)
LOCK_WAIT_MS = 5000


def _settle(flights: Iterable[_Flight]) -> None:
    """Wait until each batch in ``flights`` has committed or rolled back (its outcome is its own)."""
    for flight in flights:
        with contextlib.suppress(Exception):
            flight.future.result()


class _Again(Exception):
    """The batch before this one did not commit: this one is rolled back and committed again."""


def _lock_conflict(exc: BaseException) -> bool:
    """A lock wait that timed out or a deadlock (SQLSTATE 55P03, 40P01)."""
    from psycopg import errors

    orig = getattr(exc, "orig", exc)
    return isinstance(orig, errors.LockNotAvailable | errors.DeadlockDetected)


@dataclass(eq=False)
class _Flight:
    """A batch being committed by a writer thread."""

    prepared: PreparedColumnar | None
    state: dict[str, Any] | None
    #: the batch committing before this one (this one commits after it)
    before: _Flight | None
    row: bool = False
    future: Future[Any] = field(default_factory=Future)
    done: threading.Event = field(default_factory=threading.Event)
    committed: bool = False


def _sha1_digests(source: str, external_ids: list[str]) -> list[str]:
    """The SHA-1 (hex) of :func:`hub.model.touchpoint_id` for each external id, in C (a hash
    state of the namespace and source copied per id)."""
    prefix = hashlib.sha1(TOUCHPOINT_NAMESPACE.bytes + f"{source}\x1f".encode(), usedforsecurity=False)
    out = []
    for e in external_ids:
        h = prefix.copy()
        h.update(e.encode())
        out.append(h.hexdigest())
    return out


def _touchpoint_ids(source: str, external_ids: list[str]) -> pl.Expr:
    """:func:`hub.model.touchpoint_id` of each external id: the SHA-1 per id in C, the UUID text
    (version 5 and the RFC 4122 variant over the hex digest) assembled by Polars."""
    h = pl.lit(pl.Series("digest", _sha1_digests(source, external_ids), dtype=pl.String))
    variant = h.str.slice(16, 1).replace_strict(
        list("0123456789abcdef"), list("89ab89ab89ab89ab89ab89ab89ab89ab"[:16]), return_dtype=pl.String
    )
    return pl.concat_str(
        [
            h.str.slice(0, 8),
            pl.lit("-"),
            h.str.slice(8, 4),
            pl.lit("-5"),
            h.str.slice(13, 3),
            pl.lit("-"),
            variant,
            h.str.slice(17, 3),
            pl.lit("-"),
            h.str.slice(20, 12),
        ]
    )


def touchpoint_ids(source: str, external_ids: list[str]) -> pl.Series:
    """:func:`hub.model.touchpoint_id` of each external id."""
    return pl.select(_touchpoint_ids(source, external_ids)).to_series()


def _write_frame(conn: Connection, table: Table, frame: pl.DataFrame) -> None:
    """Insert ``frame``'s rows into ``table``: ``COPY`` on PostgreSQL, an executemany elsewhere."""
    if frame.height == 0:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), frame.to_dicts())
        return
    out = {}
    for name, dtype in frame.schema.items():
        col = frame[name]
        if dtype == pl.Boolean:
            out[name] = pl.select(pl.when(pl.lit(col)).then(pl.lit("t")).otherwise(pl.lit("f"))).to_series()
        elif isinstance(dtype, pl.Datetime):
            col = col if dtype.time_zone else col.dt.replace_time_zone("UTC")
            out[name] = _copy_time(col)
        else:
            out[name] = _copy_text(col.cast(pl.String))
    _copy(conn, table, pl.DataFrame(out))


def _copy_one(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


#: rows of COPY text formatted at a time: a batch's text is never whole in memory
COPY_CHUNK_ROWS = 2000


def _copy_chunks(frame: pl.DataFrame) -> Iterator[memoryview]:
    """``frame`` (every column COPY text already) as COPY text, ``COPY_CHUNK_ROWS`` rows at a time."""
    buf = io.BytesIO()
    for start in range(0, frame.height, COPY_CHUNK_ROWS):
        buf.seek(0)
        buf.truncate()
        frame.slice(start, COPY_CHUNK_ROWS).write_csv(
            buf, separator="\t", quote_style="never", include_header=False, null_value="\\N"
        )
        yield buf.getbuffer()


def _copy(conn: Connection, table: str | Table, frame: pl.DataFrame) -> None:
    """COPY ``frame``'s rows (COPY text per column) into ``table``, its columns by name."""
    raw = conn.connection.driver_connection
    assert raw is not None
    name = table if isinstance(table, str) else table.name
    collist = ", ".join(f'"{c}"' for c in frame.columns)
    with raw.cursor() as cur, cur.copy(f"COPY {name} ({collist}) FROM STDIN") as copy:
        for chunk in _copy_chunks(frame):
            copy.write(chunk)
            chunk.release()


class _Prefetch(Iterator[Any]):
    """Items of ``source`` fetched ahead by a thread, at most ``depth`` waiting."""

    _END = object()

    def __init__(self, source: Iterator[Any], depth: int):
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._source = source
        self._thread = threading.Thread(target=self._run, name="cxhub-columnar-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._source:
                while not self._stop.is_set():
                    try:
                        self._q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put(("end", None))
        except BaseException as exc:
            self._put(("error", exc))
        finally:
            close: Callable[[], None] | None = getattr(self._source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _put(self, item: tuple[str, Any]) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __next__(self) -> Any:
        kind, item = self._q.get()
        if kind == "item":
            return item
        if kind == "error":
            raise item
        self._q.put((kind, item))  # stays at the end
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()
        self._thread.join(timeout=30)
