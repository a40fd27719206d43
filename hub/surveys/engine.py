"""The survey rules engine: an ingest hook that turns transactions into invitations.

For each newly stored touchpoint, inside the batch's transaction:

1. the first enabled rule whose ``when`` matches owns it (one invitation per transaction at most:
   ``survey_invitations.transaction_id`` is unique, so a replay or a second rule changes nothing);
2. a transaction too old to ask about any more (``occurred_at + delay + expires`` has passed,
   e.g. a backfill) is ``stale``; an anonymous one is ``unreachable``;
3. exclusions: opted out, an open case (pluggable ``ExclusionCheck``s);
4. sampling: deterministic per (rule, customer) -- a customer is in or out of a 30% sample for
   good, never re-rolled per transaction;
   timing: ``send_at = max(occurred_at + delay, now)``, moved out of the store's quiet hours
   (deferred, never dropped); the customer must be reachable on some configured channel;
5. caps at ``send_at``: global (every survey), per survey, per channel, over rolling windows;
6. channel: the first configured channel the customer is reachable on (and not capped on);
7. compose the questionnaire for the basket, sign the link, enqueue the message in the outbox
   with ``not_before = send_at`` and the key ``survey:{rule}:{touchpoint}``.

Every outcome, sent or not, is an invitation row with its ``decision``, ``reason`` and ``detail``.
Survey responses (any source) whose ``attributes`` carry ``invitation_id`` mark it responded.
"""

from __future__ import annotations

import hashlib
import logging
import time as _time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, column, func, inspect, select, table, update
from sqlalchemy.sql.expression import ColumnClause

from hub.connector import Button, OutboundMessage
from hub.ingest import IngestContext
from hub.model import EventKind, TouchpointEvent
from hub.outbox import enqueue
from hub.privacy import SENSITIVE_NAMESPACES, Vault, mask_identity
from hub.store import insert_ignore
from hub.store.schema import customers, identities
from hub.surveys.config import (
    Cap,
    ChannelConfig,
    OpenCaseExclusion,
    QuietHours,
    Rule,
    SurveysConfig,
    Trigger,
)
from hub.surveys.questionnaire import Questionnaire, compose
from hub.surveys.schema import invitations
from hub.surveys.tokens import TokenError, TokenSigner

log = logging.getLogger("cxhub.surveys")

INVITATION_NAMESPACE = uuid.UUID("3b0e6a4e-9a53-4f0e-8b8e-6c2a5d7f1e21")
#: identity namespace that links hosted-page responses back to the customer who was invited
CUSTOMER_NAMESPACE = "cxhub_customer"
#: decisions that put a message in the outbox (and so count against caps)
SENT_DECISIONS = ("scheduled", "deferred")


def invitation_id(rule: str, transaction_id: str) -> str:
    """Deterministic id of the invitation ``rule`` makes for a transaction touchpoint."""
    return str(uuid.uuid5(INVITATION_NAMESPACE, f"{rule}\x1f{transaction_id}"))


def outbox_key(rule: str, transaction_id: str) -> str:
    """The idempotency key of the invitation message: derived from rule + touchpoint."""
    return f"survey:{rule}:{transaction_id}"


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


# ---------------------------------------------------------------- sampling


def sample_bucket(rule: str, customer: str) -> float:
    """A stable number in [0, 1) for (rule, customer): the same customer always lands in the same
    place, so a 30% sample is the same 30% of customers every time (hash-sticky)."""
    digest = hashlib.sha256(f"cxhub-sample\x1f{rule}\x1f{customer}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampled_in(rule: Rule, customer: str) -> bool:
    """Whether ``customer`` is in ``rule``'s sample."""
    return rule.sample >= 1 or sample_bucket(rule.name, customer) < rule.sample


# ---------------------------------------------------------------- quiet hours


def in_quiet_hours(local: datetime, quiet: QuietHours) -> bool:
    """Whether a local wall-clock time is inside the quiet period (``start`` inclusive)."""
    t = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= t < quiet.end
    return t >= quiet.start or t < quiet.end  # spans midnight: 21:30-08:30


def defer_quiet_hours(when: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """``when`` (UTC) moved to the end of the quiet period if it falls inside; unchanged otherwise."""
    if quiet is None:
        return when
    local = when.astimezone(zone)
    if not in_quiet_hours(local, quiet):
        return when
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:  # 22:00 in a 21:30-08:30 period ends tomorrow morning
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(UTC)


# ---------------------------------------------------------------- exclusions


class ExclusionCheck(Protocol):
    """A reason not to invite a customer at all; ``None`` when there is none."""

    reason: str

    def __call__(self, conn: Connection, customer_id: str) -> str | None: ...


class OptedOutCheck:
    """Customers who opted out (``customers.opted_out``, set from the survey page too)."""

    reason = "opted_out"

    def __call__(self, conn: Connection, customer_id: str) -> str | None:
        row = conn.execute(select(customers.c.opted_out).where(customers.c.id == customer_id)).first()
        return "the customer opted out of surveys" if row is not None and row[0] else None


class OpenCaseCheck:
    """Customers with an open case (issue 7's ``cases`` table): don't ask someone we are still
    putting right. Looks for the table each minute until it exists, so the hub runs without it."""

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
        if not self.cfg.enabled or not self._table_exists(conn):
            return None
        cust: ColumnClause[Any] = column(self.cfg.customer_column)
        status: ColumnClause[Any] = column(self.cfg.status_column)
        t = table(self.cfg.table, cust, status)
        q = select(func.count()).select_from(t).where(cust == customer_id)
        if self.cfg.closed_statuses:
            q = q.where(status.not_in(self.cfg.closed_statuses))
        n = conn.execute(q).scalar_one()
        return f"the customer has {n} open case(s) in {self.cfg.table}" if n else None


# ---------------------------------------------------------------- reachability


@dataclass(frozen=True)
class Reach:
    """A way to reach the customer on one channel: ``to`` is the address the destination needs."""

    channel: ChannelConfig
    to: str
    masked: str


def reachable(conn: Connection, vault: Vault, customer_id: str, channels: Sequence[ChannelConfig]) -> list[Reach]:
    """The channels (in order) the customer can be reached on, from their identities."""
    rows = conn.execute(
        select(identities.c.namespace, identities.c.scope, identities.c.value, identities.c.contact)
        .where(identities.c.customer_id == customer_id)
        .order_by(identities.c.first_seen.desc())
    ).all()
    out: list[Reach] = []
    for ch in channels:
        ns = ch.identity_namespace
        for r in rows:
            if r.namespace != ns or (ch.scope is not None and r.scope != ch.scope):
                continue
            if ns in SENSITIVE_NAMESPACES:
                if not r.contact:
                    continue  # only the hash is known: matchable, not reachable
                try:
                    to = vault.decrypt(r.contact)
                except ValueError:
                    log.warning(
                        "a %s contact of customer %s cannot be decrypted (secret key changed?)", ns, customer_id
                    )
                    continue
            else:
                to = r.value
            out.append(Reach(ch, to, mask_identity(ns, to)))
            break
    return out


# ---------------------------------------------------------------- the hook


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


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class SurveyEngine:
    """The ingest hook of the surveys feature (see the module docstring)."""

    name = "surveys"

    def __init__(
        self,
        cfg: SurveysConfig,
        questionnaires: dict[str, Questionnaire],
        *,
        secret_key: bytes,
        public_url: str,
        exclusions: Sequence[ExclusionCheck] | None = None,
    ):
        self.cfg = cfg
        self.questionnaires = questionnaires
        self.vault = Vault(secret_key)
        self.signer = TokenSigner(secret_key)
        self.public_url = public_url.rstrip("/")
        if exclusions is None:
            exclusions = []
            if cfg.exclusions.opted_out:
                exclusions.append(OptedOutCheck())
            if cfg.exclusions.open_case.enabled:
                exclusions.append(OpenCaseCheck(cfg.exclusions.open_case))
        self.exclusions: list[ExclusionCheck] = list(exclusions)
        self.channels = [c for c in cfg.channels if c.enabled]

    # ------------------------------------------------------------ entry

    def __call__(self, ctx: IngestContext, events: Sequence[TouchpointEvent]) -> None:
        if not self.cfg.enabled:
            return
        owned: list[tuple[TouchpointEvent, Rule]] = []
        for ev in events:
            if ev.kind == EventKind.survey_response:
                self.record_response(ctx.conn, ev)
                continue
            rule = self.rule_for(ev)
            if rule is not None:
                owned.append((ev, rule))
        if not owned:
            return
        # one query for the whole batch instead of one per transaction
        done: set[str] = set()
        ids = [ev.id for ev, _ in owned]
        for i in range(0, len(ids), 500):
            q = select(invitations.c.transaction_id).where(invitations.c.transaction_id.in_(ids[i : i + 500]))
            done.update(r[0] for r in ctx.conn.execute(q))
        for ev, rule in owned:
            if ev.id not in done:
                self.consider(ctx.conn, ev, rule, ctx.now, checked=True)

    def rule_for(self, ev: TouchpointEvent) -> Rule | None:
        """The first enabled rule whose trigger matches ``ev``."""
        store_type = self._store_type(ev.org.store)
        for rule in self.cfg.rules:
            if rule.enabled and matches(rule.when, ev, store_type):
                return rule
        return None

    def _store_type(self, store: str | None) -> str | None:
        info = self.cfg.stores.get(store or "")
        return info.type if info else None

    def link(self, token: str) -> str:
        return f"{self.public_url}/s/{token}"

    # ------------------------------------------------------------ deciding

    def decide(self, conn: Connection, ev: TouchpointEvent, rule: Rule, now: datetime) -> Outcome:
        """Every check, in order; the first that says no is the reason."""
        # first, and without a query: a backfill of last year's orders must not cost a lookup each
        due = ev.occurred_at + timedelta(seconds=rule.delay)
        if due + timedelta(seconds=rule.expires) <= now:
            return Outcome(
                "suppressed",
                "stale",
                f"transaction at {ev.occurred_at:%Y-%m-%d %H:%M}Z is older than delay + expiry "
                f"({_human(rule.delay + rule.expires)})",
            )
        cid = ev.customer.customer_id
        if not cid:
            return Outcome("suppressed", "unreachable", "anonymous transaction: no customer identity")
        for check in self.exclusions:
            why = check(conn, cid)
            if why:
                return Outcome("suppressed", check.reason, why)
        if not sampled_in(rule, cid):
            return Outcome(
                "suppressed",
                "sampled_out",
                f"customer is outside the {rule.sample:.0%} sample of {rule.name} "
                f"(bucket {sample_bucket(rule.name, cid):.3f})",
            )
        wanted = max(due, now)
        zone = self.cfg.store_zone(ev.org.store)
        send_at = defer_quiet_hours(wanted, zone, self.cfg.quiet_hours)
        deferred = send_at != wanted
        order = rule.channels or [c.channel for c in self.channels]
        channels = sorted((c for c in self.channels if c.channel in order), key=lambda c: order.index(c.channel))
        reaches = reachable(conn, self.vault, cid, channels)
        if not reaches:
            tried = ", ".join(f"{c.channel} ({c.identity_namespace})" for c in channels) or "no channel configured"
            return Outcome("suppressed", "unreachable", f"no identity reachable on: {tried}")
        for cap in self.cfg.caps:
            n = self._count(conn, cid, send_at, cap)
            if n >= cap.max:
                return Outcome(
                    "suppressed",
                    "capped_global",
                    f"{n} survey invitation(s) within {_human(cap.per)} (global cap {cap.max}/{_human(cap.per)})",
                )
        for cap in rule.caps:
            n = self._count(conn, cid, send_at, cap, rule=rule.name)
            if n >= cap.max:
                return Outcome(
                    "suppressed",
                    "capped_survey",
                    f"{n} invitation(s) of {rule.name} within {_human(cap.per)} (cap {cap.max}/{_human(cap.per)})",
                )
        chosen: Reach | None = None
        capped: list[str] = []
        for reach in reaches:
            over = [
                c
                for c in self.cfg.channel_caps.get(reach.channel.channel, [])
                if self._count(conn, cid, send_at, c, channel=reach.channel.channel) >= c.max
            ]
            if over:
                capped.append(f"{reach.channel.channel} ({over[0].max}/{_human(over[0].per)})")
                continue
            chosen = reach
            break
        if chosen is None:
            return Outcome("suppressed", "capped_channel", "every reachable channel is capped: " + ", ".join(capped))
        notes = [f"{c} capped" for c in capped]
        expires_at = send_at + timedelta(seconds=rule.expires)
        if deferred:
            local = wanted.astimezone(zone)
            q = self.cfg.quiet_hours
            assert q is not None
            return Outcome(
                "deferred",
                "quiet_hours",
                f"{local:%H:%M} {zone.key} is inside quiet hours {q.start:%H:%M}-{q.end:%H:%M}; "
                f"deferred to {send_at.astimezone(zone):%Y-%m-%d %H:%M}",
                send_at,
                expires_at,
                chosen,
                notes,
            )
        return Outcome("scheduled", None, None, send_at, expires_at, chosen, notes)

    def _count(
        self,
        conn: Connection,
        customer_id: str,
        at: datetime,
        cap: Cap,
        *,
        rule: str | None = None,
        channel: str | None = None,
    ) -> int:
        # invitations may be scheduled in the future (delay, quiet hours): count those whose send
        # time lies within one window either side, so no window of `per` ever holds more than `max`
        per = timedelta(seconds=cap.per)
        q = (
            select(func.count())
            .select_from(invitations)
            .where(
                invitations.c.customer_id == customer_id,
                invitations.c.decision.in_(SENT_DECISIONS),
                invitations.c.send_at > at - per,
                invitations.c.send_at < at + per,
            )
        )
        if rule is not None:
            q = q.where(invitations.c.rule == rule)
        if channel is not None:
            q = q.where(invitations.c.channel == channel)
        return int(conn.execute(q).scalar_one())

    # ------------------------------------------------------------ acting

    def consider(
        self, conn: Connection, ev: TouchpointEvent, rule: Rule, now: datetime, *, checked: bool = False
    ) -> dict[str, Any] | None:
        """Decide for one transaction and write the invitation (and its message); returns the row,
        or None when the transaction already has an invitation (``checked``: the caller looked)."""
        if not checked:
            exists = conn.execute(select(invitations.c.id).where(invitations.c.transaction_id == ev.id)).first()
            if exists is not None:
                return None
        out = self.decide(conn, ev, rule, now)
        inv_id = invitation_id(rule.name, ev.id)
        info = self.cfg.stores.get(ev.org.store or "")
        store_name = ev.org.store_name or (info.name if info else None) or ev.org.store
        doc: dict[str, Any] = {
            "store_name": store_name,
            "brand": ev.org.brand,
            "source": ev.source,
            "transaction_channel": ev.channel,
            "categories": ev.categories,
            "amount": str(ev.order.amount) if ev.order and ev.order.amount is not None else None,
        }
        if out.notes:
            doc["notes"] = out.notes
        key = None
        if out.decision in SENT_DECISIONS:
            assert out.reach is not None and out.send_at is not None and out.expires_at is not None
            q = self.questionnaires[rule.questionnaire]
            composed = compose(
                q,
                items=ev.order.items if ev.order else [],
                store_name=store_name,
                brand=ev.org.brand,
                store_type=info.type if info else None,
                channel=ev.channel,
                max_blocks=rule.max_blocks if rule.max_blocks is not None else self.cfg.max_blocks,
            )
            token = self.signer.sign(inv_id, out.expires_at)
            url = self.link(token)
            key = outbox_key(rule.name, ev.id)
            message = self._message(key, out.reach, composed.invite_title, composed.invite_body, url, token, out)
            enqueue(
                conn,
                destination=out.reach.channel.destination,
                message=message,
                now=now,
                cause=f"survey_invitation:{inv_id}",
                not_before=out.send_at,
            )
            # responses from the hosted page carry this identity, so they resolve to this customer
            if ev.customer.customer_id:
                conn.execute(
                    insert_ignore(conn, identities, ["namespace", "scope", "value"]),
                    {
                        "namespace": CUSTOMER_NAMESPACE,
                        "scope": "",
                        "value": ev.customer.customer_id,
                        "customer_id": ev.customer.customer_id,
                        "contact": None,
                        "first_seen": now,
                    },
                )
            doc.update(
                {
                    "recipient": out.reach.masked,
                    "blocks": composed.blocks,
                    "shares": composed.shares,
                    "questions": composed.questions,
                    "title": composed.title,
                    "intro": composed.intro,
                    "thanks": composed.thanks,
                    "invite_title": composed.invite_title,
                    "locale": q.locale,
                }
            )
        row = {
            "id": inv_id,
            "rule": rule.name,
            "questionnaire": rule.questionnaire,
            "transaction_id": ev.id,
            "order_id": ev.order.id if ev.order else None,
            "customer_id": ev.customer.customer_id,
            "store": ev.org.store,
            "channel": out.reach.channel.channel if out.reach else None,
            "destination": out.reach.channel.destination if out.reach else None,
            "decision": out.decision,
            "reason": out.reason,
            "detail": out.detail,
            "status": "suppressed" if out.decision == "suppressed" else "pending",
            "occurred_at": ev.occurred_at,
            "created_at": now,
            "send_at": out.send_at,
            "expires_at": out.expires_at,
            "outbox_key": key,
            "doc": doc,
        }
        conn.execute(insert_ignore(conn, invitations, ["transaction_id"]), row)
        log.info("survey %s for %s: %s %s", rule.name, ev.id, out.decision, out.reason or "")
        return row

    def _message(
        self, key: str, reach: Reach, title: str, body: str, url: str, token: str, out: Outcome
    ) -> OutboundMessage:
        ch = reach.channel
        assert out.expires_at is not None
        expires = out.expires_at.astimezone(ZoneInfo(self.cfg.timezone)).strftime("%m月%d日 %H:%M")
        values = {"survey": title, "body": body, "link": url, "expires": expires}
        data: dict[str, Any] = {"token": token, "link": url, "expires": expires, "channel": ch.channel}
        for name, text in ch.fields.items():
            data[name] = text.format_map(_Safe(values))
        if ch.page:
            data["page"] = f"{ch.page}{'&' if '?' in ch.page else '?'}token={token}"
        # SMS and email carry the link in the text; the others have a button / url field
        text = f"{body}\n{url}" if ch.channel in ("sms", "email") else body
        return OutboundMessage(
            key=key,
            title=title,
            body=text,
            to=[reach.to],
            buttons=[Button("参与问卷", url)],
            template=ch.template,
            data=data,
            url=url,
        )

    # ------------------------------------------------------------ responses

    def record_response(self, conn: Connection, ev: TouchpointEvent) -> bool:
        """Mark the invitation a response answers (by ``attributes.invitation_id`` or
        ``attributes.survey_token``) as responded. True when one was marked."""
        inv = ev.attributes.get("invitation_id")
        token = ev.attributes.get("survey_token")
        if not inv and isinstance(token, str):
            try:  # a late answer still answers the invitation: only the signature matters here
                inv = self.signer.verify(token, check_expiry=False).invitation_id
            except TokenError:
                inv = None
        if not isinstance(inv, str) or not inv:
            return False
        res = conn.execute(
            update(invitations)
            .where(invitations.c.id == inv, invitations.c.status == "pending")
            .values(status="responded", responded_at=ev.occurred_at, response_id=ev.id)
        )
        return bool(res.rowcount)


class _Safe(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
