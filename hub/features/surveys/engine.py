"""The survey rules engine: an ingest hook that turns transactions into invitations.

For each newly stored touchpoint, inside the batch's transaction:

1. the first enabled rule whose ``when`` matches owns it (one invitation per transaction at most:
   ``survey_invitations.transaction_id`` is unique, so a replay or a second rule changes nothing);
2. the rules decide (``hub.features.surveys.rules``): stale, anonymous, exclusions (opted out,
   open case), sampling, reachability, caps, channel -- with the send time from
   ``hub.features.surveys.schedule`` (delay, quiet hours);
3. the invitation is written (``hub.features.surveys.invitations``): compose the questionnaire for
   the basket, sign the link, enqueue the message in the outbox with ``not_before = send_at`` and
   the key ``survey:{rule}:{touchpoint}``.

Every outcome, sent or not, is an invitation row with its ``decision``, ``reason`` and ``detail``.
Survey responses (any source) whose ``attributes`` carry ``invitation_id`` mark it responded.

The hook works per batch (``consider_many``): on PostgreSQL it first takes a transaction-scoped
advisory lock per customer (ascending key order, so concurrent batches cannot deadlock on them) so
two processes ingesting one customer cannot both pass a cap; then a handful of set-based queries
load what the batch needs (transactions already invited, exclusions, identities, the invitations
inside the cap windows); the decisions are made in memory in event order, an invitation decided
earlier in the batch counting against the caps of the later ones exactly as if it had been
written; invitations, outbox messages and identities are written in bulk. ``consider`` (one
transaction, e.g. the feedback feature's recovery survey) is a batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from hub.features.surveys import invitations, rules
from hub.features.surveys.config import ChannelConfig, Rule, SurveysConfig
from hub.features.surveys.exclusions import ExclusionCheck, default_exclusions
from hub.features.surveys.questionnaire import Questionnaire
from hub.features.surveys.rules import Outcome
from hub.features.surveys.tokens import TokenSigner
from hub.model import EventKind, TouchpointEvent
from hub.privacy import Vault
from hub.store.locks import lock_customers

if TYPE_CHECKING:
    from hub.ingest import IngestContext


class SurveyEngine:
    """The ingest hook of the surveys feature (see the module docstring).

    It works per batch: a handful of set-based queries load what the batch needs (transactions
    already invited, exclusions, identities, invitations within the cap windows), the decisions
    are made in memory in event order (an invitation decided earlier in the batch counts against
    the caps of the next), and the invitations, messages and identities are written in bulk.
    """

    name = "surveys"
    #: works from the events it is given; never reads this batch's touchpoint rows back (IngestHook)
    reads_touchpoints = False

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
            exclusions = default_exclusions(cfg.exclusions)
        self.exclusions: list[ExclusionCheck] = list(exclusions)
        self.channels = [c for c in cfg.channels if c.enabled]
        self._zone = ZoneInfo(cfg.timezone)
        self._rule_channels: dict[str, list[ChannelConfig]] = {}

    # ------------------------------------------------------------ entry

    def __call__(self, ctx: IngestContext, events: Sequence[TouchpointEvent]) -> None:
        if not self.cfg.enabled:
            return
        owned: list[tuple[TouchpointEvent, Rule]] = []
        for ev in events:
            if ev.kind == EventKind.survey_response:
                self.record_response(ctx.conn, ev, ctx.now)
                continue
            rule = self.rule_for(ev)
            if rule is not None:
                owned.append((ev, rule))
        if owned:
            self.consider_many(ctx.conn, owned, ctx.now)

    def rule_for(self, ev: TouchpointEvent) -> Rule | None:
        """The first enabled rule whose trigger matches ``ev``."""
        return rules.rule_for(self.cfg, ev)

    def link(self, token: str) -> str:
        return invitations.invitation_link(self.public_url, token)

    def channels_for(self, rule: Rule) -> list[ChannelConfig]:
        """The enabled channels ``rule`` may use, in its preference order."""
        got = self._rule_channels.get(rule.name)
        if got is None:
            got = self._rule_channels[rule.name] = rules.rule_channels(rule, self.channels)
        return got

    # ------------------------------------------------------------ deciding

    def plan(self, conn: Connection, pairs: Sequence[tuple[TouchpointEvent, Rule]], now: datetime) -> list[Outcome]:
        """Decide for every (transaction, rule) of a batch, in order, writing nothing (see
        ``hub.features.surveys.rules.plan``)."""
        return rules.plan(
            conn,
            pairs,
            now,
            cfg=self.cfg,
            exclusions=self.exclusions,
            vault=self.vault,
            channels_for=self.channels_for,
        )

    def decide(self, conn: Connection, ev: TouchpointEvent, rule: Rule, now: datetime) -> Outcome:
        """The decision for one transaction (nothing written)."""
        return self.plan(conn, [(ev, rule)], now)[0]

    # ------------------------------------------------------------ acting

    def consider(
        self, conn: Connection, ev: TouchpointEvent, rule: Rule, now: datetime, *, checked: bool = False
    ) -> dict[str, Any] | None:
        """Decide for one transaction and write the invitation (and its message); returns the row,
        or None when the transaction already has an invitation (``checked``: the caller looked)."""
        rows = self.consider_many(conn, [(ev, rule)], now, checked=checked)
        return rows[0] if rows else None

    def consider_many(
        self,
        conn: Connection,
        pairs: Sequence[tuple[TouchpointEvent, Rule]],
        now: datetime,
        *,
        checked: bool = False,
    ) -> list[dict[str, Any]]:
        """Decide for a batch of (transaction, owning rule) and write the invitations, messages and
        identities in bulk, inside the caller's transaction. Transactions that already have an
        invitation are skipped (``checked``: the caller made sure there are none). Returns the
        invitation rows written, in order."""
        seen: set[str] = set()
        unique: list[tuple[TouchpointEvent, Rule]] = []
        for ev, rule in pairs:
            if ev.id not in seen:  # one invitation per transaction, within the batch too
                seen.add(ev.id)
                unique.append((ev, rule))
        # serialise per customer across processes before reading the caps (PostgreSQL; stale and
        # anonymous transactions read no caps and need no lock)
        lock_customers(
            conn,
            (
                ev.customer.customer_id
                for ev, rule in unique
                if ev.customer.customer_id and ev.occurred_at + timedelta(seconds=rule.delay + rule.expires) > now
            ),
        )
        if not checked:
            done = invitations.already_invited(conn, [ev.id for ev, _ in unique])
            unique = [(ev, rule) for ev, rule in unique if ev.id not in done]
        if not unique:
            return []
        outcomes = self.plan(conn, unique, now)
        return invitations.write_invitations(
            conn,
            unique,
            outcomes,
            now,
            cfg=self.cfg,
            questionnaires=self.questionnaires,
            signer=self.signer,
            link=self.link,
            zone=self._zone,
        )

    # ------------------------------------------------------------ responses

    def record_response(self, conn: Connection, ev: TouchpointEvent, now: datetime | None = None) -> bool:
        """Mark the invitation a response answers (by ``attributes.invitation_id`` or
        ``attributes.survey_token``) as responded, with its scores, and tell the console's live
        pages. True when one was marked."""
        return invitations.record_response(conn, self.signer, ev, now)
