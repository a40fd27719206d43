"""The NATS JetStream transport: receivers publish, ingest workers pull, commit, then ack.

Subjects and streams, for ``transport.stream: S``:

- ``S`` (work-queue retention) holds the verified records on ``cxhub.S.in.<source>``, one message
  per record, its ``Nats-Msg-Id`` the record's idempotency key ``<source>:<external id>``: a
  platform's retry within ``duplicate_window_seconds`` is dropped by JetStream itself, a later one
  by the store's dedup on (source, external id);
- ``S_DLQ`` (limits retention) holds the dead letters on ``cxhub.S.dlq.<source>``: records that
  failed ``max_deliver`` times, with the reason in the ``Cxhub-Reason`` header. ``cxhub quarantine``
  lists them beside the quarantine, ``cxhub replay`` runs them through the ingest again and deletes
  the ones that are stored;
- ``S_NONCES`` (a key-value bucket) is the receivers' shared replay-protection memory.

A receiver (:class:`NatsTransport`) answers the platform only after JetStream's ack of every
record of the push. An ingest worker (:class:`IngestWorker`, one thread with its own event loop)
pulls batches from one durable consumer shared by every worker, commits each source's records in
one ingest transaction, then acks them. A worker killed between the commit and the ack makes
JetStream redeliver after ``ack_wait_seconds``; the store's dedup absorbs it. While a batch
commits, the worker tells JetStream it is still working (``+WPI``) so a slow store does not turn
into redeliveries.

A record that fails is delivered again after a growing delay; once it has been delivered
``max_deliver`` times it goes to the dead-letter stream. The consumer itself has no delivery
limit: the worker dead-letters a record that arrives past the limit (its earlier workers crashed),
so nothing waits forever in the stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from prometheus_client import Counter, Gauge

from hub.columnar.bursts import BurstIngest
from hub.errors import RetriableError
from hub.sdk.connector import RawRecord, Rejected
from hub.store import dumps
from hub.transport import Transport

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from hub.config import TransportConfig
    from hub.ingest import IngestResult
    from hub.runtime import Runtime

log = logging.getLogger("cxhub.transport")
T = TypeVar("T")

#: the durable pull consumer every ingest worker shares
CONSUMER = "cxhub-ingest"

PUBLISHED = Counter("cxhub_transport_published_total", "Records published to JetStream by receivers", ["source"])
DUPLICATES = Counter(
    "cxhub_transport_duplicates_total", "Publishes JetStream dropped as duplicates (Nats-Msg-Id)", ["source"]
)
PUBLISH_FAILURES = Counter(
    "cxhub_transport_publish_failures_total", "Pushes answered 503 because JetStream did not ack", ["source"]
)
INGESTED = Counter("cxhub_transport_ingested_total", "Records committed and acked by ingest workers", ["source"])
REDELIVERIES = Counter("cxhub_transport_redeliveries_total", "Records a worker received more than once", ["source"])
DEAD_LETTERS = Counter("cxhub_transport_dead_letters_total", "Records moved to the dead-letter stream", ["source"])
LAG = Gauge(
    "cxhub_transport_stream_lag", "Records waiting in the stream (not yet delivered, or delivered and not acked)"
)
DEAD_LETTER_DEPTH = Gauge("cxhub_transport_dead_letter_depth", "Records in the dead-letter stream")


# ---------------------------------------------------------------- names and encoding


def dlq_stream(cfg: TransportConfig) -> str:
    return f"{cfg.stream}_DLQ"


def nonce_bucket(cfg: TransportConfig) -> str:
    return f"{cfg.stream}_NONCES"


def subject(cfg: TransportConfig, source: str, kind: str = "in") -> str:
    return f"cxhub.{cfg.stream}.{kind}.{source}"


def servers(cfg: TransportConfig) -> list[str]:
    return [u.strip() for u in cfg.url.split(",") if u.strip()]


def encode(source: str, record: RawRecord | None = None, rejected: Rejected | None = None) -> tuple[str, bytes]:
    """The message id and body of one verified record (or one unparsable payload)."""
    if record is not None:
        body = {"s": source, "e": record.external_id, "t": record.received_at.isoformat(), "p": record.payload}
        return f"{source}:{record.external_id}", dumps(body).encode("utf-8")
    assert rejected is not None
    body = {"s": source, "x": {"e": rejected.external_id, "p": rejected.payload, "r": rejected.reason}}
    data = dumps(body).encode("utf-8")
    return f"{source}:rejected:{hashlib.blake2b(data, digest_size=16).hexdigest()}", data


def decode(data: bytes) -> tuple[str, RawRecord | Rejected]:
    """The source and the record (or rejected payload) of a message body; ValueError when it is not one."""
    try:
        body = orjson.loads(data)
        source = body["s"]
        if "x" in body:
            x = body["x"]
            return source, Rejected(external_id=x["e"], payload=x["p"], reason=x["r"])
        received = datetime.fromisoformat(body["t"])
        return source, RawRecord(source=source, external_id=body["e"], payload=body["p"], received_at=received)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a cxhub record ({type(exc).__name__}: {exc})") from None


async def connect(cfg: TransportConfig, name: str, **options: Any) -> NATS:
    """A NATS connection that reconnects for ever (a NATS restart is an outage, not an exit)."""
    import nats

    return await nats.connect(
        servers=servers(cfg),
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.5,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        **options,
    )


async def ensure_streams(js: JetStreamContext, cfg: TransportConfig) -> None:
    """Create the record stream and the dead-letter stream if they do not exist (every process
    does this at start; the first one creates them)."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    wanted = [
        StreamConfig(
            name=cfg.stream,
            subjects=[f"cxhub.{cfg.stream}.in.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            duplicate_window=cfg.duplicate_window_seconds,
            num_replicas=cfg.replicas,
        ),
        StreamConfig(
            name=dlq_stream(cfg),
            subjects=[f"cxhub.{cfg.stream}.dlq.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=cfg.duplicate_window_seconds,
            num_replicas=cfg.replicas,
        ),
    ]
    for sc in wanted:
        try:
            await js.stream_info(sc.name or "")
            continue
        except NotFoundError:
            pass
        with contextlib.suppress(BadRequestError):  # another process created it meanwhile
            await js.add_stream(sc)


# ---------------------------------------------------------------- replay protection


class KvNonces:
    """:class:`~hub.transport.SharedNonces` in a JetStream key-value bucket, so that receivers never
    need the store. The receiver awaits ``claim_async`` on its event loop; ``claim`` is for other
    threads."""

    def __init__(self, cfg: TransportConfig, window: float):
        self.cfg = cfg
        #: how long the bucket keeps a nonce: the longest replay window, with a margin
        self.ttl = max(600.0, 2 * window)
        self._kv: KeyValue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, kv: KeyValue) -> None:
        self._loop, self._kv = loop, kv

    async def open(self, js: JetStreamContext) -> KeyValue:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BadRequestError, BucketNotFoundError

        bucket = nonce_bucket(self.cfg)
        try:
            return await js.key_value(bucket)
        except BucketNotFoundError:
            pass
        try:
            return await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=1, ttl=self.ttl, storage=StorageType.FILE, replicas=self.cfg.replicas
                )
            )
        except BadRequestError:  # created by another process meanwhile
            return await js.key_value(bucket)

    async def claim_async(self, key: str, digest: bytes, ttl: float) -> bool:
        if self._kv is None:
            raise RetriableError("the replay check is not connected to NATS yet; try again")
        try:
            return await asyncio.wait_for(self._claim(key, digest), self.cfg.publish_timeout_seconds)
        except Exception as exc:
            log.warning("nonce check: NATS did not answer (%s)", type(exc).__name__)
            raise RetriableError("the replay check cannot reach NATS; try again") from None

    def claim(self, key: str, digest: bytes, ttl: float) -> bool:
        """From another thread than the receiver's event loop (which it waits on)."""
        if self._kv is None or self._loop is None:
            raise RetriableError("the replay check is not connected to NATS yet; try again")
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                raise RetriableError("the replay check cannot wait on its own event loop")
        future = asyncio.run_coroutine_threadsafe(self._claim(key, digest), self._loop)
        try:
            return future.result(timeout=self.cfg.publish_timeout_seconds)
        except RetriableError:
            raise
        except Exception as exc:
            future.cancel()
            log.warning("nonce check: NATS did not answer (%s)", type(exc).__name__)
            raise RetriableError("the replay check cannot reach NATS; try again") from None

    async def _claim(self, key: str, digest: bytes) -> bool:
        from nats.js.errors import KeyWrongLastSequenceError

        assert self._kv is not None
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()
        want = digest.hex().encode("ascii")
        try:
            await self._kv.create(name, want)
            return True
        except KeyWrongLastSequenceError:
            entry = await self._kv.get(name)
            return entry.value is None or hmac.compare_digest(entry.value, want)


# ---------------------------------------------------------------- the receiver side


class NatsTransport(Transport):
    """Publish each record of a verified push; return after JetStream acknowledged all of them."""

    kind = "nats"

    def __init__(self, cfg: TransportConfig, *, nonces: Any = None):
        self.cfg = cfg
        self.nonces = nonces if isinstance(nonces, KvNonces) else None
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._ready = False
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._ready and self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        """Connect in the background: a receiver started before NATS answers 503 until it is up."""
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        while True:
            try:
                nc = await connect(self.cfg, "cxhub-receiver")
                break
            except Exception as exc:
                log.warning("NATS at %s unreachable (%s); retrying", self.cfg.url.split("@")[-1], type(exc).__name__)
                await asyncio.sleep(1)
        self._nc = nc
        self._js = nc.jetstream(timeout=self.cfg.publish_timeout_seconds)
        while True:
            try:
                await ensure_streams(self._js, self.cfg)
                if self.nonces is not None:
                    self.nonces.attach(asyncio.get_running_loop(), await self.nonces.open(self._js))
                break
            except Exception as exc:
                log.warning("JetStream not ready (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1)
        self._ready = True
        log.info("receiver connected to JetStream stream %s", self.cfg.stream)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        self._ready = False

    async def hand_off(self, source: str, records: Sequence[RawRecord], rejected: Sequence[Rejected]) -> None:
        if not self._ready or self._js is None:
            PUBLISH_FAILURES.labels(source).inc()
            raise RetriableError("not connected to JetStream yet")
        js = self._js
        subj = subject(self.cfg, source)
        messages = [encode(source, record=r) for r in records] + [encode(source, rejected=r) for r in rejected]

        async def one(msg_id: str, data: bytes) -> None:
            ack = await js.publish(subj, data, headers={"Nats-Msg-Id": msg_id})
            (DUPLICATES if ack.duplicate else PUBLISHED).labels(source).inc()

        try:
            await asyncio.wait_for(asyncio.gather(*(one(i, d) for i, d in messages)), self.cfg.publish_timeout_seconds)
        except Exception:
            PUBLISH_FAILURES.labels(source).inc()
            raise


# ---------------------------------------------------------------- the worker side


@dataclass
class _Item:
    msg: Msg
    source: str
    record: RawRecord | Rejected


class IngestWorker:
    """Pulls records from the stream and ingests them (``cxhub run --role worker``); a thread with
    its own event loop and NATS connection, started and stopped by ``cxhub run``."""

    def __init__(self, rt: Runtime, cfg: TransportConfig | None = None, *, name: str = "cxhub-ingest-worker"):
        self.rt = rt
        self.cfg = cfg or rt.config.raw.transport
        self.name = name
        self.bursts = BurstIngest(rt.ingestor)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.connected = False
        self.batches = 0  # for tests and the benchmark

    # -- lifecycle (the caller's thread)

    def start(self) -> None:
        started = threading.Event()

        def run() -> None:
            asyncio.run(self._main(started))

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        started.wait(5)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop pulling, finish the batch in hand (commit and ack), disconnect; False when it
        was still working at ``timeout`` (JetStream redelivers what it did not ack)."""
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the worker's loop

    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        started.set()
        nc: NATS | None = None
        while not self._stopping.is_set():
            try:
                nc = await connect(self.cfg, self.name)
                break
            except Exception as exc:
                log.warning("ingest worker: NATS unreachable (%s); retrying", type(exc).__name__)
                await self._sleep(1)
        if nc is None:
            return
        try:
            await self._consume(nc)
        finally:
            self.connected = False
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)  # the last acks out
            with contextlib.suppress(Exception):
                await nc.close()

    async def _sleep(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _consume(self, nc: NATS) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        assert self._stopping is not None
        js = nc.jetstream(timeout=5)
        sub = None
        last_lag = 0.0
        while not self._stopping.is_set():
            try:
                if sub is None:
                    await ensure_streams(js, self.cfg)
                    sub = await js.pull_subscribe(
                        f"cxhub.{self.cfg.stream}.in.>",
                        durable=CONSUMER,
                        stream=self.cfg.stream,
                        config=ConsumerConfig(
                            ack_policy=AckPolicy.EXPLICIT,
                            deliver_policy=DeliverPolicy.ALL,
                            ack_wait=self.cfg.ack_wait_seconds,
                            max_deliver=-1,
                            max_ack_pending=max(1000, self.cfg.batch_size * 8),
                        ),
                    )
                    self.connected = True
                    log.info("ingest worker pulling from JetStream stream %s", self.cfg.stream)
                if time.monotonic() - last_lag > 5:
                    last_lag = time.monotonic()
                    await self._sample_lag(js, sub)
                try:
                    msgs = await sub.fetch(self.cfg.batch_size, timeout=1)
                except (TimeoutError, NatsTimeout):
                    continue
                await self._process(js, msgs)
                self.batches += 1
            except Exception as exc:
                self.connected = False
                log.warning("ingest worker: %s (%s); retrying", type(exc).__name__, exc)
                if not nc.is_connected:
                    sub = None  # subscribe again once reconnected
                await self._sleep(1)

    async def _sample_lag(self, js: JetStreamContext, sub: Any) -> None:
        with contextlib.suppress(Exception):
            info = await sub.consumer_info()
            LAG.set(info.num_pending + info.num_ack_pending)
            dlq = await js.stream_info(dlq_stream(self.cfg))
            DEAD_LETTER_DEPTH.set(dlq.state.messages)

    async def _process(self, js: JetStreamContext, msgs: list[Msg]) -> None:
        groups: dict[str, list[_Item]] = {}
        for msg in msgs:
            delivered = msg.metadata.num_delivered
            try:
                source, rec = decode(msg.data)
            except ValueError as exc:
                await self._dead_letter(js, msg, "?", str(exc))
                continue
            if delivered > 1:
                REDELIVERIES.labels(source).inc()
            if delivered > self.cfg.max_deliver:
                reason = f"delivered {delivered} times without a commit (workers crashed or timed out on it)"
                await self._dead_letter(js, msg, source, reason)
                continue
            groups.setdefault(source, []).append(_Item(msg, source, rec))
        for source, items in groups.items():
            await self._commit(js, source, items)

    async def _commit(self, js: JetStreamContext, source: str, items: list[_Item]) -> None:
        try:
            await self._while_working(items, asyncio.to_thread(self._ingest, source, items))
        except Exception as exc:
            if len(items) > 1:  # isolate the record that breaks the batch
                for item in items:
                    await self._commit(js, source, [item])
                return
            await self._failed(js, items[0], exc)
            return
        for item in items:
            await item.msg.ack()
        INGESTED.labels(source).inc(len(items))

    async def _while_working(self, items: list[_Item], work: Awaitable[T]) -> T:
        """Await ``work``, telling JetStream every third of ``ack_wait`` that the batch is in progress."""
        task = asyncio.ensure_future(work)
        every = max(0.5, self.cfg.ack_wait_seconds / 3)
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            for item in items:
                with contextlib.suppress(Exception):
                    await item.msg.in_progress()

    def _ingest(self, source: str, items: list[_Item]) -> IngestResult:
        records = sorted((i.record for i in items if isinstance(i.record, RawRecord)), key=lambda r: r.external_id)
        rejected = [i.record for i in items if isinstance(i.record, Rejected)]
        spec = self.rt.config.sources.get(source)
        if spec is None or spec.mapping is None:
            raise LookupError(f"no source {source!r} with a mapping in this worker's config")
        return self.bursts.ingest(source, spec.mapping, records, rejected=rejected)

    async def _failed(self, js: JetStreamContext, item: _Item, exc: Exception) -> None:
        delivered = item.msg.metadata.num_delivered
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if delivered >= self.cfg.max_deliver:
            await self._dead_letter(js, item.msg, item.source, reason)
            return
        delay = min(30.0, 0.5 * 2 ** (delivered - 1))
        log.warning(
            "ingest worker: a %s record failed (delivery %d of %d, again in %.1fs): %s",
            item.source,
            delivered,
            self.cfg.max_deliver,
            delay,
            reason,
        )
        await item.msg.nak(delay=delay)

    async def _dead_letter(self, js: JetStreamContext, msg: Msg, source: str, reason: str) -> None:
        headers = dict(msg.headers or {})
        msg_id = headers.get("Nats-Msg-Id") or f"seq:{msg.metadata.sequence.stream}"
        headers.update(
            {
                "Nats-Msg-Id": msg_id,
                "Cxhub-Reason": reason.replace("\r", " ").replace("\n", " "),
                "Cxhub-Deliveries": str(msg.metadata.num_delivered),
                "Cxhub-Failed-At": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        safe = source if source and all(c.isalnum() or c in "_-" for c in source) else "unknown"
        await js.publish(subject(self.cfg, safe, "dlq"), msg.data, headers=headers)
        await msg.term()  # never redelivered; acked for the work queue
        DEAD_LETTERS.labels(safe).inc()
        log.warning("ingest worker: a %s record went to the dead-letter stream: %s", safe, reason)


# ---------------------------------------------------------------- dead letters (CLI)


@dataclass
class DeadLetter:
    """One record of the dead-letter stream."""

    seq: int
    source: str
    external_id: str | None
    reason: str
    deliveries: int
    failed_at: str
    data: bytes = field(repr=False)

    def as_row(self) -> dict[str, Any]:
        """The shape of a quarantine row (``cxhub quarantine``)."""
        try:
            payload: Any = decode(self.data)[1].payload
        except ValueError:
            payload = {"$base64": base64.b64encode(self.data).decode("ascii")}
        return {
            "id": f"dl-{self.seq}",
            "source": self.source,
            "external_id": self.external_id,
            "stage": "dead-letter",
            "status": "open",
            "reason": f"{self.reason} (after {self.deliveries} deliveries)",
            "payload": payload,
            "created_at": self.failed_at,
        }


def _run(cfg: TransportConfig, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run ``work`` with a short-lived JetStream connection (the CLI's commands)."""
    from hub.errors import ConfigError

    async def main() -> T:
        import nats

        try:
            nc = await nats.connect(servers=servers(cfg), connect_timeout=2, max_reconnect_attempts=0)
        except Exception as exc:
            raise ConfigError(
                f"cannot reach NATS at {cfg.url.split('@')[-1]} ({type(exc).__name__})", key="transport.url"
            ) from None
        try:
            js = nc.jetstream(timeout=5)
            await ensure_streams(js, cfg)
            return await work(js)
        finally:
            await nc.close()

    return asyncio.run(main())


async def _dead_letters(
    js: JetStreamContext, cfg: TransportConfig, source: str | None, limit: int | None, seqs: Sequence[int] | None
) -> list[DeadLetter]:
    from nats.js.errors import NotFoundError

    out: list[DeadLetter] = []
    stream = dlq_stream(cfg)
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return out
    wanted = sorted(set(seqs)) if seqs else None
    seq = info.state.first_seq
    filt = subject(cfg, source, "dlq") if source else f"cxhub.{cfg.stream}.dlq.>"
    while limit is None or len(out) < limit:
        try:
            if wanted is not None:
                if not wanted:
                    break
                raw = await js.get_msg(stream, seq=wanted.pop(0))
            else:
                raw = await js.get_msg(stream, seq=seq, subject=filt, next=True)
        except NotFoundError:
            if wanted is not None:
                continue
            break
        seq = (raw.seq or seq) + 1
        headers = raw.headers or {}
        subj = raw.subject or ""
        src = subj.rsplit(".", 1)[-1]
        if source and src != source:
            continue
        msg_id = headers.get("Nats-Msg-Id", "")
        ext = msg_id.split(":", 1)[1] if ":" in msg_id and ":rejected:" not in msg_id else None
        out.append(
            DeadLetter(
                seq=raw.seq or 0,
                source=src,
                external_id=ext,
                reason=headers.get("Cxhub-Reason", "?"),
                deliveries=int(headers.get("Cxhub-Deliveries", "0") or 0),
                failed_at=headers.get("Cxhub-Failed-At", ""),
                data=raw.data or b"",
            )
        )
    return out


def dead_letters(cfg: TransportConfig, *, source: str | None = None, limit: int | None = 50) -> list[DeadLetter]:
    """The records in the dead-letter stream, oldest first."""
    return _run(cfg, lambda js: _dead_letters(js, cfg, source, limit, None))


def delete_dead_letters(cfg: TransportConfig, seqs: Sequence[int]) -> None:
    async def work(js: JetStreamContext) -> None:
        for s in seqs:
            await js.delete_msg(dlq_stream(cfg), s)

    _run(cfg, work)


def take_dead_letters(
    cfg: TransportConfig, *, source: str | None = None, seqs: Sequence[int] | None = None
) -> list[DeadLetter]:
    """Every dead letter (or those of ``seqs``), for a replay."""
    return _run(cfg, lambda js: _dead_letters(js, cfg, source, None, seqs))
