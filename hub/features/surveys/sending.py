"""Every path from "decided" to "sent": the survey invitation is checked again right before its
message goes out, and its fate is recorded when the message dies.

The delivery worker calls :class:`SurveySendCheck` (a :class:`hub.outbox.checks.SendCheck`) for
outbox keys ``survey:...``. An invitation may wait a long time between its decision and its send
(the delay, a backlog, an outage, retries), so at send time:

- its link expired meanwhile: not sent; the invitation is ``expired`` (reason ``expired_unsent``);
- the customer opted out meanwhile: not sent; ``cancelled`` (reason ``opted_out``);
- it is now the quiet hours of its store: put back until they end (``send_at`` moves, with a
  ``detail`` saying so);
- otherwise it goes as planned.

When its message dies (the platform refused it for good: the user unfollowed, never subscribed,
an invalid openid...; or its attempts ran out), the next reachable channel of the rule that was
not tried yet and is under its channel caps gets the same invitation (same link, same expiry):
a new outbox message ``survey:{rule}:{transaction}:{channel}``, and the invitation's channel,
destination and ``outbox_key`` follow it. With no channel left the invitation is ``failed``
(reason ``undeliverable``) with every refusal in ``detail``; replaying its last message
(``cxhub outbox replay``) makes it pending again, through the same checks. Expired, cancelled and
failed invitations do not count as sent in the response rate.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from hub.features.surveys.config import Rule
from hub.features.surveys.exclusions import OptedOutCheck
from hub.features.surveys.invitations import MessageTexts, build_message
from hub.features.surveys.reach import needs_form_id, reachable
from hub.features.surveys.schedule import defer_quiet_hours, human_duration, in_quiet_hours
from hub.features.surveys.schema import SENT_DECISIONS, UNSENT_STATUSES, invitations
from hub.outbox import enqueue_many, pending_row
from hub.outbox.checks import Cancel, Defer, Verdict
from hub.outbox.leases import Claimed
from hub.store.schema import customers

if TYPE_CHECKING:
    from hub.features.surveys.engine import SurveyEngine

log = logging.getLogger("cxhub.surveys")

#: how much of ``detail`` a chain of refusals may fill
DETAIL_LIMIT = 1000


class SurveySendCheck:
    """The surveys feature's send-time check (see the module docstring)."""

    prefix = "survey:"

    def __init__(self, engine: SurveyEngine):
        self.engine = engine
        self.cfg = engine.cfg

    # ------------------------------------------------------------ before the send

    def _invitation(self, conn: Connection, key: str) -> dict[str, Any] | None:
        """The invitation whose message has outbox key ``key``, with ``opted_out`` of its customer
        (one query: this runs before every survey message)."""
        q = (
            select(invitations, customers.c.opted_out)
            .select_from(invitations.outerjoin(customers, customers.c.id == invitations.c.customer_id))
            .where(invitations.c.outbox_key == key)
        )
        row = conn.execute(q).mappings().first()
        return None if row is None else dict(row)

    def _superseding(self, conn: Connection, key: str) -> str | None:
        """The current message key of the invitation an older message ``key`` belonged to, if any."""
        parts = key.split(":")
        if len(parts) < 3:
            return None
        q = select(invitations.c.outbox_key).where(invitations.c.transaction_id == parts[2])
        current = conn.execute(q).scalar()
        return current if current and current != key else None

    def before_send(self, conn: Connection, row: Claimed, now: datetime) -> Verdict:
        """Expired, opted out, quiet hours: see the module docstring."""
        inv = self._invitation(conn, row.key)
        if inv is None:
            # an earlier message of an invitation that fell back to another channel since (an
            # operator replayed it): the customer is reached on the other channel, never twice
            later = self._superseding(conn, row.key)
            return None if later is None else Cancel(f"superseded by {later}")
        if inv["status"] == "failed" and inv["outbox_key"] == row.key:
            # an operator replayed its dead message (`cxhub outbox replay`): it is live again
            conn.execute(
                update(invitations)
                .where(invitations.c.id == inv["id"])
                .values(status="pending", detail=_join(inv["detail"], "its message was replayed"))
            )
            inv["status"] = "pending"
        if inv["status"] != "pending":
            return Cancel(f"invitation {inv['id']} is {inv['status']}")
        if inv["expires_at"] is not None and inv["expires_at"] <= now:
            detail = f"its link expired at {inv['expires_at']:%Y-%m-%d %H:%M}Z before it could be sent"
            self._finish(conn, inv, "expired", "expired_unsent", detail)
            return Cancel(detail)
        if self.cfg.exclusions.opted_out and inv["opted_out"]:
            why = OptedOutCheck.TEXT
            self._finish(conn, inv, "cancelled", "opted_out", f"{why} before it was sent")
            return Cancel(f"the customer opted out ({why})")
        quiet = self.cfg.quiet_hours
        if quiet is not None:
            zone = self.cfg.store_zone(inv["store"])
            local = now.astimezone(zone)
            if in_quiet_hours(local, quiet):
                until = defer_quiet_hours(now, zone, quiet)
                detail = (
                    f"at send time {local:%H:%M} {zone.key} was inside quiet hours "
                    f"{quiet.start:%H:%M}-{quiet.end:%H:%M}; deferred to {until.astimezone(zone):%Y-%m-%d %H:%M}"
                )
                conn.execute(
                    update(invitations)
                    .where(invitations.c.id == inv["id"])
                    .values(send_at=until, detail=_join(inv["detail"], detail))
                )
                return Defer(until, detail)
        if inv["sent_at"] is None:  # the console's funnel: handed to the platform (after_dead undoes it)
            conn.execute(update(invitations).where(invitations.c.id == inv["id"]).values(sent_at=now))
        return None

    # ------------------------------------------------------------ after a dead message

    def after_dead(self, conn: Connection, row: Claimed, error: str, code: str | None, now: datetime) -> None:
        """Fall back to the next reachable channel, or mark the invitation ``failed``."""
        inv = self._invitation(conn, row.key)
        if inv is None or inv["status"] != "pending":
            return
        refused = f"{inv['channel']} refused it: {error}"
        rule = next((r for r in self.cfg.rules if r.name == inv["rule"]), None)
        doc = dict(inv["doc"] or {})
        tried = [*doc.get("tried", []), inv["channel"]]
        notes: list[str] = []
        chosen = None
        if rule is not None and inv["customer_id"]:
            chosen, notes = self._next_channel(conn, inv, rule, tried, doc, now)
        if chosen is None:
            why = "; ".join([refused, *notes, "no other reachable channel"])
            self._finish(conn, inv, "failed", "undeliverable", why, doc)
            log.info("survey invitation %s failed: %s", inv["id"], why)
            return
        texts = MessageTexts.from_doc(doc)
        token = self.engine.signer.sign(inv["id"], inv["expires_at"])
        base = row.key.split(":")
        key = ":".join([*base[:3], chosen.channel.channel])  # survey:{rule}:{transaction}:{channel}
        message = build_message(
            key, chosen, texts, self.engine.link(token), token, inv["expires_at"], self.cfg.store_zone(inv["store"])
        )
        enqueue_many(
            conn,
            [
                pending_row(
                    destination=chosen.channel.destination,
                    message=message,
                    now=now,
                    cause=f"survey_invitation:{inv['id']}",
                    not_before=now,
                )
            ],
        )
        doc.update({"tried": tried, "recipient": chosen.masked})
        detail = "; ".join([refused, *notes, f"fell back to {chosen.channel.channel}"])
        conn.execute(
            update(invitations)
            .where(invitations.c.id == inv["id"])
            .values(
                channel=chosen.channel.channel,
                destination=chosen.channel.destination,
                outbox_key=key,
                send_at=now,
                sent_at=None,  # not sent until the next channel's message goes
                detail=_join(inv["detail"], detail),
                doc=doc,
            )
        )
        log.info("survey invitation %s: %s", inv["id"], detail)

    def _next_channel(
        self, conn: Connection, inv: dict[str, Any], rule: Rule, tried: list[str], doc: dict[str, Any], now: datetime
    ) -> tuple[Any, list[str]]:
        """The first reachable channel of ``rule`` not tried yet, under its channel caps."""
        channels = [c for c in self.engine.channels_for(rule) if c.channel not in tried]
        notes: list[str] = []
        if not channels:
            return None, notes
        form_id = (doc.get("message") or {}).get("form_id")
        for reach in reachable(conn, self.engine.vault, inv["customer_id"], channels):
            name = reach.channel.channel
            if needs_form_id(reach.channel) and not form_id:
                notes.append(f"{name} skipped (no form id)")
                continue
            over = self._capped(conn, inv, name, now)
            if over:
                notes.append(f"{name} capped ({over})")
                continue
            return reach, notes
        return None, notes

    def _capped(self, conn: Connection, inv: dict[str, Any], channel: str, now: datetime) -> str | None:
        """The channel cap ``channel`` is at for this customer (counted like the rules do), if any."""
        caps = self.cfg.channel_caps.get(channel, [])  # type: ignore[call-overload]
        if not caps:
            return None
        widest = timedelta(seconds=max(c.per for c in caps))
        times = [
            r[0]
            for r in conn.execute(
                select(invitations.c.send_at).where(
                    invitations.c.customer_id == inv["customer_id"],
                    invitations.c.channel == channel,
                    invitations.c.decision.in_(SENT_DECISIONS),
                    invitations.c.status.notin_(UNSENT_STATUSES),
                    invitations.c.id != inv["id"],
                    invitations.c.send_at > now - widest,
                    invitations.c.send_at < now + widest,
                )
            )
            if r[0] is not None
        ]
        for cap in caps:
            window = timedelta(seconds=cap.per)
            if sum(1 for t in times if now - window < t < now + window) >= cap.max:
                return f"{cap.max}/{human_duration(cap.per)}"
        return None

    # ------------------------------------------------------------ recording

    def _finish(
        self,
        conn: Connection,
        inv: dict[str, Any],
        status: str,
        reason: str,
        detail: str,
        doc: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "reason": reason, "detail": _join(inv["detail"], detail)}
        if doc is not None:
            values["doc"] = doc
        conn.execute(
            update(invitations).where(invitations.c.id == inv["id"], invitations.c.status == "pending").values(**values)
        )


def _join(before: str | None, more: str) -> str:
    text = f"{before}; {more}" if before else more
    return text if len(text) <= DETAIL_LIMIT else "…" + text[-(DETAIL_LIMIT - 1) :]
