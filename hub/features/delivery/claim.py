"""Claiming a batch: due outbox rows leased to this worker, then planned in the same transaction.

The claim itself (``FOR UPDATE SKIP LOCKED``, leases, whole digests) is :func:`hub.outbox.leases.claim`.
The plan, per destination: a platform block (DingTalk 130101) puts the rows back until it ends;
otherwise the shared budget says how many sends are allowed now. When the backlog is larger,
messages are combined into digests (as few as the body limit allows); digest membership is stored
before the send, so a digest that fails is retried with the same members and key. What still does
not fit goes back to ``pending`` until the next slot frees (no attempt used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection

from hub.errors import CxhubError
from hub.features.delivery.budgets import buckets_for
from hub.features.delivery.units import PumpResult, Step, Unit
from hub.outbox import leases
from hub.outbox.leases import Claimed
from hub.outbox.messages import recipient_tag
from hub.sdk.connector import Destination
from hub.sdk.render import digest_key, pack_digests

DEFAULT_DIGEST_BYTES = 4000


@dataclass
class Plan:
    """What a claim comes to: the units to send now, and how many rows went back to wait."""

    units: list[Unit] = field(default_factory=list)
    deferred: int = 0


@dataclass
class Batch:
    """One claim, planned: what to send (as tasks for the pool) and when it was claimed."""

    tasks: list[list[Unit]]
    claimed_at: datetime
    full: bool


class Claimer(Step):
    """Claims and plans batches for one worker (``worker_id``) serving ``destinations``."""

    # settings (store, clock, worker_id, lease, policy, budgets...) come from :class:`Step`

    def next_batch(self, result: PumpResult) -> Batch | None:
        """Claim and plan one batch (one transaction); None when nothing is due."""
        now = self.clock()
        with self.store.begin() as conn:
            rows = self.claim(conn, now)
            if not rows:
                return None
            plan = self.plan(conn, rows, now)
        result.claimed += len(rows)
        result.deferred += plan.deferred
        # Group robots (digests) are sent to in order, one at a time: a chat shows messages in the
        # order sent, their budgets are tiny, and the first throttle answer stops the rest of their
        # units. Every other unit goes out in parallel (their budgets were reserved in the plan).
        tasks: list[list[Unit]] = []
        serial: dict[str, list[Unit]] = {}
        for unit in plan.units:
            dest = unit.rows[0].destination
            dst = self.resolve(dest)
            if getattr(dst, "rate_limits", ()) and getattr(dst, "supports_digest", False):
                if dest not in serial:
                    serial[dest] = []
                    tasks.append(serial[dest])
                serial[dest].append(unit)
            else:
                tasks.append([unit])
        # only a full claim suggests more is due; a serial destination must not overlap itself
        return Batch(tasks, now, full=len(rows) >= self.batch_size and not serial)

    def claim(self, conn: Connection, now: datetime) -> list[Claimed]:
        """Lease up to ``batch_size`` due rows in ``conn``'s transaction, sorted by id."""
        return leases.claim(
            conn,
            now=now,
            worker_id=self.worker_id,
            lease=self.lease,
            destinations=self.destinations,
            limit=self.batch_size,
        )

    def plan(self, conn: Connection, rows: list[Claimed], now: datetime) -> Plan:
        """Decide what of ``rows`` is sent now, and combined how; put the rest back."""
        plan = Plan()
        by_dest: dict[str, list[Claimed]] = {}
        for r in rows:
            by_dest.setdefault(r.destination, []).append(r)
        for name, group in by_dest.items():
            try:
                dst = self.resolve(name)
            except CxhubError as exc:
                # a destination that cannot be built (bad secret file...) waits; it is retried
                self.release(conn, group, now + timedelta(seconds=self.policy.delay(1)), str(exc))
                plan.deferred += len(group)
                continue
            blocked = self.budgets.blocked_until(conn, name, now)
            if blocked is not None:
                self.release(conn, group, blocked)
                plan.deferred += len(group)
                continue
            limits = tuple(getattr(dst, "rate_limits", ()))
            if not limits:
                plan.units.extend(units_of(group))
                continue
            per_recipient = any(lim.scope == "recipient" for lim in limits)
            subgroups: dict[tuple[str, ...], list[Claimed]] = {}
            for r in group:
                subgroups.setdefault(tuple(sorted(r.message.to)) if per_recipient else (), []).append(r)
            for recipients, sub in subgroups.items():
                buckets = buckets_for(name, limits, recipients, tag=lambda r: recipient_tag(conn, r))
                state = self.budgets.combined(conn, buckets, now)
                units = units_of(sub)
                if len(units) > state.available > 0 and getattr(dst, "supports_digest", False):
                    units = digest_units(dst, units)
                send, rest = units[: state.available], units[state.available :]
                self.budgets.take(conn, buckets, len(send), now)
                plan.units.extend(send)
                if rest:
                    after = self.budgets.combined(conn, buckets, now).next_free or now + timedelta(seconds=1)
                    released = [r for u in rest for r in u.rows]
                    self.release(conn, released, after)
                    plan.deferred += len(released)
        return plan

    def release(self, conn: Connection, rows: Sequence[Claimed], when: datetime, error: str | None = None) -> None:
        """Put claimed rows back, unsent, without using up an attempt."""
        leases.release(conn, rows, worker_id=self.worker_id, when=when, now=self.clock(), error=error)


def units_of(rows: list[Claimed]) -> list[Unit]:
    """Rows as send units: members of one stored digest together, the others alone."""
    units: list[Unit] = []
    by_batch: dict[str, Unit] = {}
    for r in rows:
        if r.batch_key:
            if r.batch_key not in by_batch:
                by_batch[r.batch_key] = Unit([], r.batch_key)
                units.append(by_batch[r.batch_key])
            by_batch[r.batch_key].rows.append(r)
        else:
            units.append(Unit([r]))
    return units


def digest_units(dst: Destination, units: list[Unit]) -> list[Unit]:
    """Keep existing digests; pack the single messages into as few new digests as fit."""
    existing = [u for u in units if u.batch_key]
    singles = [u.rows[0] for u in units if not u.batch_key]
    max_bytes = dst.max_body_bytes or DEFAULT_DIGEST_BYTES
    packs = pack_digests([r.message for r in singles], max_bytes)
    new_units = []
    for idx in packs:
        rows = [singles[i] for i in idx]
        if len(rows) == 1:
            new_units.append(Unit(rows))
        else:
            new_units.append(Unit(rows, digest_key([r.key for r in rows])[len("digest:") :][:64]))
    return existing + new_units
