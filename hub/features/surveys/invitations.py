"""Invitations: the row every decision leaves, the outbox message of those that are sent, the
signed link the message carries, and marking an invitation answered.

Invitation ids and message keys are derived from (rule, transaction), so a replay writes nothing
new: ``survey_invitations.transaction_id`` and ``outbox.key`` are unique and the inserts skip what
exists. Everything of a batch is written in bulk, in the caller's transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from hub.features.surveys.config import Rule, SurveysConfig
from hub.features.surveys.lookups import among, batches
from hub.features.surveys.questionnaire import Questionnaire, compose, items_text
from hub.features.surveys.reach import Reach, form_id_of
from hub.features.surveys.rules import Outcome
from hub.features.surveys.schema import SENT_DECISIONS, invitations
from hub.features.surveys.tokens import TokenError, TokenSigner
from hub.model import TouchpointEvent
from hub.outbox import enqueue_many, pending_row
from hub.sdk.connector import Button, OutboundMessage
from hub.store import bulk_insert_ignore
from hub.store.schema import identities

log = logging.getLogger("cxhub.surveys")

INVITATION_NAMESPACE = uuid.UUID("3b0e6a4e-9a53-4f0e-8b8e-6c2a5d7f1e21")
#: template fields of a channel without a ``fields:`` mapping (SMS templates take the link)
DEFAULT_FIELDS: dict[str, dict[str, str]] = {"sms": {"link": "{link}"}}
#: identity namespace that links hosted-page responses back to the customer who was invited
CUSTOMER_NAMESPACE = "cxhub_customer"


def invitation_id(rule: str, transaction_id: str) -> str:
    """Deterministic id of the invitation ``rule`` makes for a transaction touchpoint."""
    return str(uuid.uuid5(INVITATION_NAMESPACE, f"{rule}\x1f{transaction_id}"))


def outbox_key(rule: str, transaction_id: str) -> str:
    """The idempotency key of the invitation message: derived from rule + touchpoint."""
    return f"survey:{rule}:{transaction_id}"


def invitation_link(public_url: str, token: str) -> str:
    """The hosted survey page of a signed token (``public_url`` without its trailing slash)."""
    return f"{public_url}/s/{token}"


def already_invited(conn: Connection, transaction_ids: Sequence[str]) -> set[str]:
    """The transactions among ``transaction_ids`` that have an invitation (whatever its decision)."""
    done: set[str] = set()
    for chunk in batches(conn, transaction_ids):
        q = select(invitations.c.transaction_id).where(among(conn, invitations.c.transaction_id, chunk))
        done.update(r[0] for r in conn.execute(q))
    return done


def write_invitations(
    conn: Connection,
    pairs: Sequence[tuple[TouchpointEvent, Rule]],
    outcomes: Sequence[Outcome],
    now: datetime,
    *,
    cfg: SurveysConfig,
    questionnaires: dict[str, Questionnaire],
    signer: TokenSigner,
    link: Callable[[str], str],
    zone: ZoneInfo,
) -> list[dict[str, Any]]:
    """Write the invitation of each decision, the outbox message of each one sent and the identity
    that links the customer's answers back to them, in bulk. Returns the invitation rows, in order.

    ``link(token)`` is the survey page's URL; ``zone`` is the section's time zone (the expiry the
    message shows)."""
    rows: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    linked: dict[str, dict[str, Any]] = {}
    for (ev, rule), out in zip(pairs, outcomes, strict=True):
        row, message = _invitation_row(
            ev, rule, out, now, cfg=cfg, questionnaires=questionnaires, signer=signer, link=link, zone=zone
        )
        rows.append(row)
        if message is not None:
            messages.append(message)
            # responses from the hosted page carry this identity, so they resolve to this customer
            cid = ev.customer.customer_id
            if cid and cid not in linked:
                linked[cid] = {
                    "namespace": CUSTOMER_NAMESPACE,
                    "scope": "",
                    "value": cid,
                    "customer_id": cid,
                    "contact": None,
                    "first_seen": now,
                }
    enqueue_many(conn, messages)
    if linked:
        bulk_insert_ignore(conn, identities, list(linked.values()), ["namespace", "scope", "value"])
    bulk_insert_ignore(conn, invitations, rows, ["transaction_id"])
    if log.isEnabledFor(logging.DEBUG):
        for row in rows:
            log.debug(
                "survey %s for %s: %s %s", row["rule"], row["transaction_id"], row["decision"], row["reason"] or ""
            )
    if log.isEnabledFor(logging.INFO):
        tally: dict[str, int] = {}
        for row in rows:
            k = row["decision"] if row["reason"] is None else f"{row['decision']} ({row['reason']})"
            tally[k] = tally.get(k, 0) + 1
        log.info("surveys: %d invitation(s): %s", len(rows), ", ".join(f"{n} {k}" for k, n in sorted(tally.items())))
    return rows


def _invitation_row(
    ev: TouchpointEvent,
    rule: Rule,
    out: Outcome,
    now: datetime,
    *,
    cfg: SurveysConfig,
    questionnaires: dict[str, Questionnaire],
    signer: TokenSigner,
    link: Callable[[str], str],
    zone: ZoneInfo,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The invitation row of one decision, and its outbox row when something is to be sent."""
    inv_id = invitation_id(rule.name, ev.id)
    info = cfg.stores.get(ev.org.store or "")
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
    outbox_row: dict[str, Any] | None = None
    if out.decision in SENT_DECISIONS:
        assert out.reach is not None and out.send_at is not None and out.expires_at is not None
        q = questionnaires[rule.questionnaire]
        composed = compose(
            q,
            items=ev.order.items if ev.order else [],
            store_name=store_name,
            brand=ev.org.brand,
            store_type=info.type if info else None,
            channel=ev.channel,
            max_blocks=rule.max_blocks if rule.max_blocks is not None else cfg.max_blocks,
        )
        token = signer.sign(inv_id, out.expires_at)
        key = outbox_key(rule.name, ev.id)
        texts = MessageTexts(
            title=composed.invite_title,
            body=composed.invite_body,
            store_name=store_name or "",
            items=items_text(ev.order.items) if ev.order else "",
            form_id=form_id_of(ev, out.reach.channel.form_id) if out.reach.channel.channel == "alipay" else None,
        )
        message = build_message(key, out.reach, texts, link(token), token, out.expires_at, zone)
        outbox_row = pending_row(
            destination=out.reach.channel.destination,
            message=message,
            now=now,
            cause=f"survey_invitation:{inv_id}",
            not_before=out.send_at,
        )
        doc["message"] = texts.as_dict()  # a fallback channel says the same
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
    return row, outbox_row


@dataclass(frozen=True)
class MessageTexts:
    """What an invitation message says, whatever the channel (kept in the invitation's ``doc``)."""

    title: str
    body: str
    store_name: str = ""
    items: str = ""
    form_id: str | None = None  # alipay: the trade number the message is bound to

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "body": self.body,
            "store_name": self.store_name,
            "items": self.items,
            "form_id": self.form_id,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> MessageTexts:
        m = doc.get("message") or {}
        return cls(
            title=m.get("title") or doc.get("invite_title") or "",
            body=m.get("body") or "",
            store_name=m.get("store_name") or doc.get("store_name") or "",
            items=m.get("items") or "",
            form_id=m.get("form_id"),
        )


#: channel kinds that send WeChat subscribe messages (typed fields: thing1, time2...)
SUBSCRIBE_CHANNELS = frozenset({"miniprogram", "wechat_subscribe"})
#: the longest value of each subscribe-message field type (WeChat's documented limits)
SUBSCRIBE_LIMITS = {
    "thing": 20,
    "name": 10,
    "phrase": 5,
    "symbol": 5,
    "character_string": 32,
    "number": 32,
    "letter": 32,
}


def fit_subscribe_value(name: str, value: str) -> str:
    """``value`` cut to what a subscribe-message field of ``name``'s type takes (``thing3``: 20
    characters), ending in ``…`` when cut; other types unchanged."""
    kind = name.rstrip("0123456789")
    limit = SUBSCRIBE_LIMITS.get(kind)
    if limit is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…" if kind == "thing" else value[:limit]


def page_path(page: str, token: str) -> str:
    """The mini-program page of the survey with the token: ``pages/survey/index?token=...``."""
    return f"{page}{'&' if '?' in page else '?'}token={token}"


def build_message(
    key: str,
    reach: Reach,
    texts: MessageTexts,
    url: str,
    token: str,
    expires_at: datetime,
    zone: ZoneInfo,
) -> OutboundMessage:
    """The invitation message for ``reach``'s channel.

    ``data`` holds only the platform template's fields, from the channel's ``fields:`` mapping
    (an SMS channel without one gets ``{link}``); an Alipay message carries its form id as the
    ``_form_id`` extra. ``url`` is the https survey link, except for the mini-program channels
    (``miniprogram``, ``alipay``), which open a page of the mini-program: ``page?token=...``.
    """
    ch = reach.channel
    subscribe = ch.channel in SUBSCRIBE_CHANNELS
    # a subscribe message's time.DATA takes 24-hour time with the full date: 2026年11月05日 10:30
    expires = expires_at.astimezone(zone).strftime("%Y年%m月%d日 %H:%M" if subscribe else "%m月%d日 %H:%M")
    values = {
        "survey": texts.title,
        "body": texts.body,
        "link": url,
        "expires": expires,
        "store_name": texts.store_name,
        "items": texts.items,
    }
    fields = ch.fields or DEFAULT_FIELDS.get(ch.channel, {})
    data: dict[str, Any] = {name: text_.format_map(_Safe(values)) for name, text_ in fields.items()}
    if subscribe:  # WeChat refuses a value over its type's length (47003): cut it to fit
        data = {name: fit_subscribe_value(name, value) for name, value in data.items()}
    if ch.channel == "alipay" and texts.form_id:
        data["_form_id"] = texts.form_id
    # SMS and email carry the link in the text; the others have a button / url field
    text_body = f"{texts.body}\n{url}" if ch.channel in ("sms", "email") else texts.body
    return OutboundMessage(
        key=key,
        title=texts.title,
        body=text_body,
        to=[reach.to],
        buttons=[Button("参与问卷", url)],
        template=ch.template,
        data=data,
        url=page_path(ch.page_path, token) if ch.opens_page else url,
    )


#: question types whose answer is a number
SCORED_TYPES = ("nps", "csat", "ces", "rating")


def response_scores(feedback: Mapping[str, Any], answers: Any) -> dict[str, Any]:
    """What an invitation keeps of its response for the console: the NPS / CSAT / CES of the
    feedback, and every answer by question id (``scores``), a free text as ``true`` only (its words
    stay in the touchpoint, which privacy rules already cover)."""
    scores: dict[str, Any] = {}
    for a in answers if isinstance(answers, list) else []:
        if not isinstance(a, Mapping) or not isinstance(a.get("id"), str):
            continue
        kind, value = a.get("type"), a.get("value")
        number = kind in SCORED_TYPES and isinstance(value, int) and not isinstance(value, bool)
        if number or (kind in ("single", "multiple") and isinstance(value, str | list)):
            scores[a["id"]] = value
        else:  # a free text (or a type this hub does not compose): answered, words elsewhere
            scores[a["id"]] = True
    out: dict[str, Any] = {"scores": scores or None}
    for key in ("nps", "csat", "ces"):
        value = feedback.get(key)
        out[key] = int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return out


def record_response(conn: Connection, signer: TokenSigner, ev: TouchpointEvent, now: datetime | None = None) -> bool:
    """Mark the invitation a response answers (by ``attributes.invitation_id`` or
    ``attributes.survey_token``) as responded, with the response's scores, and tell the console's
    live pages (topic ``surveys``). True when one was marked."""
    inv = ev.attributes.get("invitation_id")
    token = ev.attributes.get("survey_token")
    if not inv and isinstance(token, str):
        try:  # a late answer still answers the invitation: only the signature matters here
            inv = signer.verify(token, check_expiry=False).invitation_id
        except TokenError:
            inv = None
    if not isinstance(inv, str) or not inv:
        return False
    scores = response_scores(ev.feedback.model_dump() if ev.feedback else {}, ev.attributes.get("answers"))
    res = conn.execute(
        update(invitations)
        .where(invitations.c.id == inv, invitations.c.status == "pending")
        .values(status="responded", responded_at=ev.occurred_at, response_id=ev.id, **scores)
    )
    if not res.rowcount:
        return False
    from hub.console.live import publish

    store = conn.execute(select(invitations.c.store).where(invitations.c.id == inv)).scalar()
    publish(conn, now or ev.received_at, "surveys", store=store, ref=inv)
    return True


class _Safe(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
