"""The survey rules: which rule owns a transaction, and whether (and how) its customer is asked.

``plan`` decides for a batch of (transaction, owning rule), in order, writing nothing. Every
check, in order; the first that says no is the reason:

1. ``stale``: the transaction is too old to ask about (``occurred_at + delay + expires`` has
   passed, e.g. a backfill); ``unreachable``: it is anonymous;
2. exclusions: opted out, an open case (``hub.features.surveys.exclusions``);
3. ``sampled_out``: sampling is deterministic per (rule, customer) -- a customer is in or out of a
   30% sample for good, never re-rolled per transaction;
4. timing (``hub.features.surveys.schedule``): ``send_at = max(occurred_at + delay, now)``, moved
   out of the store's quiet hours (``deferred``, never dropped);
5. ``unreachable``: the customer must be reachable on some configured channel;
6. caps at ``send_at``: global (every survey), per survey, per channel, over rolling windows;
7. channel: the first configured channel the customer is reachable on (and not capped on).

A handful of set-based queries load what the batch needs (exclusions, identities, the invitations
inside the cap windows); an invitation decided earlier in the batch counts against the caps of the
later ones exactly as if it had been written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from hub.features.surveys.config import ChannelConfig, Rule, SurveysConfig, Trigger
from hub.features.surveys.exclusions import ExclusionCheck, exclusions_for
from hub.features.surveys.lookups import among, batches
from hub.features.surveys.reach import Reach, form_id_of, identity_rows, needs_form_id, reach_from
from hub.features.surveys.schedule import deferral_detail, expires_at, human_duration, send_times, too_late
from hub.features.surveys.schema import SENT_DECISIONS, invitations
from hub.model import TouchpointEvent
from hub.privacy import Vault

# ---------------------------------------------------------------- matching


def _one_of(expected: str | list[str] | None, actual: str | None) -> bool:
    if expected is None:
        return True
    return actual in ([expected] if isinstance(expected, str) else expected)


def matches(trigger: Trigger, ev: TouchpointEvent, store_type: str | None = None) -> bool:
    """Whether ``ev`` satisfies every condition of ``trigger``."""
    if not _one_of(trigger.kind, ev.kind.value):
        return False
    checks = (
        (trigger.channel, ev.channel),
        (trigger.source, ev.source),
        (trigger.store, ev.org.store),
        (trigger.brand, ev.org.brand),
        (trigger.region, ev.org.region),
        (trigger.store_type, store_type),
    )
    if not all(_one_of(exp, act) for exp, act in checks):
        return False
    if trigger.amount is not None:
        amount = ev.order.amount if ev.order else None
        if amount is None:
            return False
        if trigger.amount.min is not None and amount < trigger.amount.min:
            return False
        if trigger.amount.max is not None and amount > trigger.amount.max:
            return False
    cats = trigger.categories
    if cats is not None and not isinstance(cats, list):
        present = set(ev.categories)
        if cats.any and not present.intersection(cats.any):
            return False
        if cats.all and not set(cats.all) <= present:
            return False
        if cats.none and present.intersection(cats.none):
            return False
    for key, want in trigger.attributes.items():
        have = ev.attributes.get(key)
        if isinstance(want, list) and not isinstance(have, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def rule_for(cfg: SurveysConfig, ev: TouchpointEvent) -> Rule | None:
    """The first enabled rule whose trigger matches ``ev``."""
    info = cfg.stores.get(ev.org.store or "")
    store_type = info.type if info else None
    for rule in cfg.rules:
        if rule.enabled and matches(rule.when, ev, store_type):
            return rule
    return None


def rule_channels(rule: Rule, channels: Sequence[ChannelConfig]) -> list[ChannelConfig]:
    """The channels (of the enabled ``channels``) ``rule`` may use, in its preference order."""
    order = rule.channels or [c.channel for c in channels]
    return sorted((c for c in channels if c.channel in order), key=lambda c: order.index(c.channel))


# ---------------------------------------------------------------- sampling


def sample_bucket(rule: str, customer: str) -> float:
    """A stable number in [0, 1) for (rule, customer): the same customer always lands in the same
    place, so a 30% sample is the same 30% of customers every time (hash-sticky)."""
    digest = hashlib.sha256(f"cxhub-sample\x1f{rule}\x1f{customer}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampled_in(rule: Rule, customer: str) -> bool:
    """Whether ``customer`` is in ``rule``'s sample."""
    return rule.sample >= 1 or sample_bucket(rule.name, customer) < rule.sample


# ---------------------------------------------------------------- caps


@dataclass(frozen=True)
class _Sent:
    """An invitation that counts against caps: sent or scheduled."""

    send_at: datetime
    rule: str
    channel: str | None


def _count(
    history: Sequence[_Sent], at: datetime, per: float, *, rule: str | None = None, channel: str | None = None
) -> int:
    # invitations may be scheduled in the future (delay, quiet hours): count those whose send
    # time lies within one window either side, so no window of `per` ever holds more than `max`
    window = timedelta(seconds=per)
    lo, hi = at - window, at + window
    return sum(
        1
        for s in history
        if lo < s.send_at < hi and (rule is None or s.rule == rule) and (channel is None or s.channel == channel)
    )


# ---------------------------------------------------------------- deciding


@dataclass
class Outcome:
    """What was decided for one transaction."""

    decision: str  # scheduled / deferred / suppressed
    reason: str | None = None
    detail: str | None = None
    send_at: datetime | None = None
    expires_at: datetime | None = None
    reach: Reach | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Item:
    """One transaction on its way through a batch."""

    ev: TouchpointEvent
    rule: Rule
    outcome: Outcome | None = None
    wanted: datetime | None = None  # occurred + delay (or now)
    send_at: datetime | None = None  # wanted, moved out of quiet hours
    zone: ZoneInfo | None = None

    @property
    def cid(self) -> str:
        return self.ev.customer.customer_id or ""


def _precheck(item: _Item, now: datetime) -> Outcome | None:
    """The checks that need no query: stale, anonymous."""
    ev, rule = item.ev, item.rule
    # first: a backfill of last year's orders must not cost a lookup each
    if too_late(ev, rule, now):
        return Outcome(
            "suppressed",
            "stale",
            f"transaction at {ev.occurred_at:%Y-%m-%d %H:%M}Z is older than delay + expiry "
            f"({human_duration(rule.delay + rule.expires)})",
        )
    if not item.cid:
        return Outcome("suppressed", "unreachable", "anonymous transaction: no customer identity")
    return None


def plan(
    conn: Connection,
    pairs: Sequence[tuple[TouchpointEvent, Rule]],
    now: datetime,
    *,
    cfg: SurveysConfig,
    exclusions: Sequence[ExclusionCheck],
    vault: Vault,
    channels_for: Callable[[Rule], list[ChannelConfig]],
) -> list[Outcome]:
    """Decide for every (transaction, rule) of a batch, in order, writing nothing.

    Every check, in order; the first that says no is the reason: stale, anonymous, exclusions,
    sampling, reachability, global caps, survey caps, channel caps. Invitations decided earlier
    in ``pairs`` count against the caps of later ones, exactly as if each had been written.
    ``channels_for(rule)``: the channels the rule may use, in its preference order.
    """
    items = [_Item(ev, rule) for ev, rule in pairs]
    live: list[_Item] = []
    for it in items:
        it.outcome = _precheck(it, now)
        if it.outcome is None:
            live.append(it)
    # exclusions: one query per check for the whole batch
    excluded = exclusions_for(conn, exclusions, sorted({it.cid for it in live}))
    sampled: list[_Item] = []
    for it in live:
        if it.cid in excluded:
            reason, why = excluded[it.cid]
            it.outcome = Outcome("suppressed", reason, why)
        elif not sampled_in(it.rule, it.cid):
            it.outcome = Outcome(
                "suppressed",
                "sampled_out",
                f"customer is outside the {it.rule.sample:.0%} sample of {it.rule.name} "
                f"(bucket {sample_bucket(it.rule.name, it.cid):.3f})",
            )
        else:
            it.zone = cfg.store_zone(it.ev.org.store)
            it.wanted, it.send_at = send_times(it.ev, it.rule, now, it.zone, cfg.quiet_hours)
            sampled.append(it)
    if not sampled:
        return [it.outcome for it in items if it.outcome is not None]
    cids = sorted({it.cid for it in sampled})
    idents = identity_rows(conn, cids)
    history = _cap_history(conn, cfg, cids, sampled)
    reach_cache: dict[tuple[str, str], list[Reach]] = {}
    for it in sampled:
        it.outcome = _decide_one(it, cfg, vault, channels_for, idents, history, reach_cache)
    return [it.outcome for it in items if it.outcome is not None]


def _cap_history(
    conn: Connection, cfg: SurveysConfig, cids: Sequence[str], items: Sequence[_Item]
) -> dict[str, list[_Sent]]:
    """The invitations of these customers that may count against a cap of these items."""
    pers = [c.per for c in cfg.caps]
    for it in items:
        pers.extend(c.per for c in it.rule.caps)
    for caps in cfg.channel_caps.values():
        pers.extend(c.per for c in caps)
    history: dict[str, list[_Sent]] = {c: [] for c in cids}
    if not pers:
        return history  # no caps at all: nothing to count
    window = timedelta(seconds=max(pers))
    times = [it.send_at for it in items if it.send_at is not None]
    lo, hi = min(times) - window, max(times) + window
    for chunk in batches(conn, cids):
        q = select(invitations.c.customer_id, invitations.c.send_at, invitations.c.rule, invitations.c.channel).where(
            among(conn, invitations.c.customer_id, chunk),
            invitations.c.decision.in_(SENT_DECISIONS),
            invitations.c.send_at > lo,
            invitations.c.send_at < hi,
        )
        for r in conn.execute(q):
            history[r.customer_id].append(_Sent(r.send_at, r.rule, r.channel))
    return history


def _decide_one(
    it: _Item,
    cfg: SurveysConfig,
    vault: Vault,
    channels_for: Callable[[Rule], list[ChannelConfig]],
    idents: dict[str, list[Any]],
    history: dict[str, list[_Sent]],
    reach_cache: dict[tuple[str, str], list[Reach]],
) -> Outcome:
    rule, cid = it.rule, it.cid
    assert it.send_at is not None and it.wanted is not None and it.zone is not None
    send_at = it.send_at
    channels = channels_for(rule)
    key = (cid, rule.name)
    reaches = reach_cache.get(key)
    if reaches is None:
        reaches = reach_cache[key] = reach_from(idents.get(cid, []), vault, cid, channels)
    if not reaches:
        tried = ", ".join(f"{c.channel} ({c.identity_namespace})" for c in channels) or "no channel configured"
        return Outcome("suppressed", "unreachable", f"no identity reachable on: {tried}")
    past = history.setdefault(cid, [])
    for cap in cfg.caps:
        n = _count(past, send_at, cap.per)
        if n >= cap.max:
            per = human_duration(cap.per)
            return Outcome(
                "suppressed",
                "capped_global",
                f"{n} survey invitation(s) within {per} (global cap {cap.max}/{per})",
            )
    for cap in rule.caps:
        n = _count(past, send_at, cap.per, rule=rule.name)
        if n >= cap.max:
            per = human_duration(cap.per)
            return Outcome(
                "suppressed",
                "capped_survey",
                f"{n} invitation(s) of {rule.name} within {per} (cap {cap.max}/{per})",
            )
    chosen: Reach | None = None
    capped: list[str] = []
    unusable: list[str] = []
    for reach in reaches:
        name = reach.channel.channel
        if needs_form_id(reach.channel) and not form_id_of(it.ev, reach.channel.form_id):
            unusable.append(f"{name} (the transaction has no {reach.channel.form_id} for its form id)")
            continue
        over = [c for c in cfg.channel_caps.get(name, []) if _count(past, send_at, c.per, channel=name) >= c.max]
        if over:
            capped.append(f"{name} ({over[0].max}/{human_duration(over[0].per)})")
            continue
        chosen = reach
        break
    if chosen is None and not capped:
        return Outcome("suppressed", "unreachable", "no channel can carry it: " + ", ".join(unusable))
    if chosen is None:
        return Outcome("suppressed", "capped_channel", "every reachable channel is capped: " + ", ".join(capped))
    # decided: it counts against the caps of the rest of the batch
    past.append(_Sent(send_at, rule.name, chosen.channel.channel))
    notes = [f"{c} capped" for c in capped] + [f"{u} skipped" for u in unusable]
    expires = expires_at(send_at, rule)
    if send_at != it.wanted:
        assert cfg.quiet_hours is not None
        return Outcome(
            "deferred",
            "quiet_hours",
            deferral_detail(it.wanted, send_at, it.zone, cfg.quiet_hours),
            send_at,
            expires,
            chosen,
            notes,
        )
    return Outcome("scheduled", None, None, send_at, expires, chosen, notes)
