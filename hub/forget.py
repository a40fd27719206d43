"""The right to be forgotten (PIPL art. 47): find a customer by phone number, platform id or
customer id, and delete or anonymise them everywhere, in one transaction.

What goes (docs/privacy.md, "Forgetting a customer"): their identities, ``customers`` rows (the
customer and every customer merged into it), touchpoints, raw payloads in the inbox, quarantined
records that name one of their values, outbox messages to them (unsent ones cancelled, every one's
recipients and texts scrubbed), the console's live feed about them; each installed feature deletes
or anonymises its own rows (:meth:`hub.feature.Feature.forget`: survey invitations and answers,
cases, scores...). What stays has no personal data: anonymous survey scores, cases without their
customer and text, counts. One ``console_audit`` row (``privacy.forget``) records who asked, the
counts per table and a random reference (``fg-...``) to quote to the person who asked; never the
phone number, the openid, their hash or the customer id.

Features call :func:`scrub_outbox` for the messages they enqueued, and :func:`anonymise_doc` for
touchpoint documents they keep as anonymous facts (survey scores).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    String,
    Text,
    and_,
    cast,
    delete,
    insert,
    null,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy import update as sql_update
from sqlalchemy.sql.elements import ColumnElement

from hub.privacy import SENSITIVE_NAMESPACES, Vault, normalize
from hub.store.schema import customers, identities, inbox, outbox, quarantine, touchpoints

if TYPE_CHECKING:
    from hub.feature import Feature
    from hub.store import Store

log = logging.getLogger("cxhub")

#: the console's audit log and live feed (hub/console/schema.py), named here without importing the
#: console (which imports this module): only the columns written or searched
console_audit = table(
    "console_audit",
    Column("id"),
    Column("at"),
    Column("actor", String),
    Column("action", String),
    Column("target", String),
    Column("store", String),
    Column("detail", JSON),
)
console_feed = table("console_feed", Column("id"), Column("ref", String), Column("data", JSON))

_MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
#: values shorter than this are not searched for inside raw payloads (too many false finds)
_MIN_SEARCH = 6
_CHUNK = 500
#: outbox statuses of a message not sent (yet): cancelled when its recipient is forgotten
UNSENT = ("pending", "sending", "failed")
CANCELLED = "cancelled: the customer was forgotten (cxhub privacy forget)"


class ForgetError(ValueError):
    """A forget request that cannot be carried out: malformed input, or no such customer.
    ``code`` names the case for a page to say it in its language: ``one_of``, ``scope``,
    ``bad_phone``, ``no_customer``."""

    def __init__(self, message: str, code: str = "no_customer"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Lookup:
    """Whom to forget: exactly one of a phone number, a platform id (``openid``, with its app id as
    ``scope`` when known) or a customer id."""

    phone: str | None = None
    openid: str | None = None
    scope: str | None = None
    customer: str | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("phone", "openid", "customer") if (getattr(self, n) or "").strip()]
        if len(given) != 1:
            raise ForgetError("give exactly one of a phone number, an openid or a customer id", "one_of")
        if self.scope and not self.openid:
            raise ForgetError("a scope (app id) goes with an openid only", "scope")

    @property
    def by(self) -> str:
        """``phone``, ``openid`` or ``customer``: how the customer was found (the audit says it)."""
        return "phone" if self.phone else "openid" if self.openid else "customer"


@dataclass
class ForgetReport:
    """What a forget did (or, with ``dry_run``, would do): rows per ``"<table>.<action>"``."""

    reference: str
    by: str
    customers: int
    counts: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "by": self.by,
            "customers": self.customers,
            "dry_run": self.dry_run,
            "counts": dict(sorted(self.counts.items())),
        }


def phone_number(value: str) -> str:
    """A mainland mobile number in its stored form (``+86 138-1234-5678`` -> ``13812345678``);
    :class:`ForgetError` when it is not one."""
    plain = normalize("phone", value)
    if not _MAINLAND_MOBILE.match(plain):
        raise ForgetError("not a mainland mobile number (11 digits starting with 1, e.g. 13812345678)", "bad_phone")
    return plain


def add(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add ``more`` into ``counts`` (zeros left out); returns ``counts``."""
    for k, v in more.items():
        if v:
            counts[k] = counts.get(k, 0) + int(v)
    return counts


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def as_text(col: Any) -> ColumnElement[str]:
    """A JSON column as text, to search inside it (``LIKE``) on SQLite and PostgreSQL alike."""
    return cast(col, Text)


# -------------------------------------------------------------------------------- finding


def find_customers(conn: Connection, vault: Vault, lookup: Lookup, namespaces: Iterable[str]) -> list[str]:
    """The customers ``lookup`` names, with every customer merged into them (none: a phone number
    or an openid no customer has; an unknown customer id is a :class:`ForgetError`).
    ``namespaces``: the identity namespaces an openid may be in."""
    i = identities.c
    found: set[str] = set()
    if lookup.phone:
        plain = phone_number(lookup.phone)
        for ns in ("phone", "mobile"):
            q = select(i.customer_id).where(i.namespace == ns, i.value == vault.hash(ns, plain))
            found.update(conn.execute(q).scalars())
    elif lookup.openid:
        value = lookup.openid.strip()
        for ns in sorted(set(namespaces) - SENSITIVE_NAMESPACES):
            q = select(i.customer_id).where(i.namespace == ns, i.value == value)
            if lookup.scope:
                q = q.where(i.scope == lookup.scope.strip())
            found.update(conn.execute(q).scalars())
    else:
        cid = (lookup.customer or "").strip()
        row = conn.execute(select(customers.c.id, customers.c.merged_into).where(customers.c.id == cid)).first()
        if row is None:
            raise ForgetError("no such customer id")
        found.add(row.merged_into or row.id)  # an absorbed id: its data is the survivor's
    return expand(conn, found)


def expand(conn: Connection, ids: Iterable[str]) -> list[str]:
    """``ids`` and every customer merged into one of them (merges leave no chains)."""
    out = set(ids)
    for chunk in _chunks(sorted(out)):
        q = select(customers.c.id).where(customers.c.merged_into.in_(list(chunk)))
        out.update(conn.execute(q).scalars())
    return sorted(out)


def _values(conn: Connection, vault: Vault, ids: Sequence[str]) -> list[str]:
    """Every value that names these customers in free data: their ids, identity values (plain
    openids and member numbers; phone numbers and emails both hashed and decrypted)."""
    values: set[str] = set(ids)
    i = identities.c
    for chunk in _chunks(ids):
        for ns, value, contact in conn.execute(
            select(i.namespace, i.value, i.contact).where(i.customer_id.in_(list(chunk)))
        ):
            values.add(value)
            if contact:
                try:
                    values.add(vault.decrypt(contact))
                except ValueError:
                    log.warning("forget: a contact of namespace %s cannot be decrypted (secret key changed?)", ns)
    return sorted(v for v in values if v)


# -------------------------------------------------------------------------------- scrubbing


def scrubbed_message(message: dict[str, Any]) -> dict[str, Any]:
    """An outbox message with no recipient and no text: the key, destination template and shape
    stay (an audit of what was sent when), nothing about whom or what."""
    return {
        **{k: v for k, v in message.items() if k in ("key", "template")},
        "title": "",
        "body": "",
        "to": [],
        "buttons": [],
        "mention": [],
        "data": {},
        "url": None,
    }


def scrub_outbox(conn: Connection, where: ColumnElement[bool], now: datetime) -> dict[str, int]:
    """Scrub the outbox messages ``where`` selects: those not sent yet are cancelled (status
    ``dead``, never sent), every one loses its recipients and texts. Counts ``outbox.cancelled``
    and ``outbox.scrubbed``."""
    rows = conn.execute(select(outbox.c.id, outbox.c.status, outbox.c.message).where(where)).all()
    return _scrub_rows(conn, rows, now)


def _scrub_rows(conn: Connection, rows: Sequence[Any], now: datetime) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        values: dict[str, Any] = {"message": scrubbed_message(row.message or {}), "updated_at": now}
        if row.status in UNSENT:
            values.update(status="dead", last_error=CANCELLED, locked_by=None, locked_until=None)
            add(counts, {"outbox.cancelled": 1})
        else:
            add(counts, {"outbox.scrubbed": 1})
        conn.execute(sql_update(outbox).where(outbox.c.id == row.id).values(**values))
    return counts


_KEEP_ATTRIBUTES = ("invitation_id", "transaction_id", "rule", "questionnaire", "blocks")


def anonymise_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A touchpoint document without its person: no identities, customer, name, text, order id,
    free attributes or raw reference; what an aggregate needs stays (kind, channel, times, store,
    scores, sentiment, topics without their spans, answers to scored and choice questions)."""
    out = dict(doc)
    out["customer"] = {"identities": [], "customer_id": None}
    out["raw_ref"] = None
    fb = out.get("feedback")
    if isinstance(fb, dict):
        fb = {**fb, "text": None}
        if isinstance(fb.get("topics"), list):
            fb["topics"] = [
                {k: v for k, v in t.items() if k not in ("span", "text", "quote")} if isinstance(t, dict) else t
                for t in fb["topics"]
            ]
        out["feedback"] = fb
    order = out.get("order")
    if isinstance(order, dict):
        out["order"] = {**order, "id": None}
    found = out.get("attributes")
    attrs: dict[str, Any] = found if isinstance(found, dict) else {}
    kept: dict[str, Any] = {k: attrs[k] for k in _KEEP_ATTRIBUTES if k in attrs}
    answers = attrs.get("answers")
    if isinstance(answers, list):
        kept["answers"] = [
            a for a in answers if isinstance(a, dict) and a.get("type") not in ("text", "textarea", "open")
        ]
    kept["anonymised"] = True
    out["attributes"] = kept
    return out


def _replace(value: Any, names: set[str], by: str) -> Any:
    """``value`` (JSON data) with every string holding one of ``names`` replaced by ``by``."""
    if isinstance(value, dict):
        return {k: _replace(v, names, by) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, names, by) for v in value]
    if isinstance(value, str) and any(n in value for n in names):
        return by
    return value


def holds_json(col: Any) -> ColumnElement[bool]:
    """A JSON column holds a value (neither SQL NULL nor JSON ``null``)."""
    return and_(col.is_not(None), as_text(col) != "null")


def _contains_any(col: Any, values: Sequence[str]) -> ColumnElement[bool]:
    return or_(*(as_text(col).contains(v, autoescape=True) for v in values))


# -------------------------------------------------------------------------------- forgetting


def forget_rows(
    conn: Connection,
    vault: Vault,
    ids: Sequence[str],
    now: datetime,
    features: Sequence[Feature],
    *,
    reference: str,
    also: Sequence[str] = (),
) -> dict[str, int]:
    """Delete or anonymise every row of customers ``ids`` (merged ones included by the caller),
    in ``conn``'s transaction: the features' rows first (they may read the touchpoints), then the
    core's. ``also``: more values naming the person in raw data (the phone number or openid asked
    for, which may sit in a quarantined record of no customer). Counts per ``"<table>.<action>"``."""
    counts: dict[str, int] = {}
    ids = list(ids)
    values = sorted(set(_values(conn, vault, ids)) | {v for v in also if v})
    if not values:
        return counts
    searchable = [v for v in values if len(v) >= _MIN_SEARCH]
    t = touchpoints.c
    tp_keys: list[tuple[str, str, str]] = []
    for chunk in _chunks(ids):
        tp_keys += [
            tuple(r) for r in conn.execute(select(t.id, t.source, t.external_id).where(t.customer_id.in_(list(chunk))))
        ]
    for feature in features if ids else ():
        add(counts, feature.forget(conn, ids, now))
    # raw payloads of their touchpoints (the inbox row stays: it is the dedup key)
    keys = [(s, e) for _, s, e in tp_keys]
    for chunk in _chunks(keys):
        n = conn.execute(
            sql_update(inbox)
            .where(tuple_(inbox.c.source, inbox.c.external_id).in_(list(chunk)), holds_json(inbox.c.payload))
            .values(payload=null())
        ).rowcount
        add(counts, {"inbox.payload_cleared": n})
    # quarantined records naming one of their values (phone, openid, member number, customer id),
    # and any other raw payload naming one (a quarantined record's inbox row)
    if searchable:
        n = conn.execute(
            sql_update(inbox)
            .where(holds_json(inbox.c.payload), _contains_any(inbox.c.payload, searchable))
            .values(payload=null())
        ).rowcount
        add(counts, {"inbox.payload_cleared": n})
        n = conn.execute(delete(quarantine).where(_contains_any(quarantine.c.payload, searchable))).rowcount
        add(counts, {"quarantine.deleted": n})
    # messages not sent yet to one of their values (recipients are sealed: opened one by one)
    add(counts, _forget_unsent(conn, set(values), now))
    # the live feed (kept an hour) and the audit log's references to them
    tp_ids = [tid for tid, _, _ in tp_keys]
    names = list(dict.fromkeys([*ids, *tp_ids]))
    for chunk in _chunks(names, 100):
        n = conn.execute(
            delete(console_feed).where(
                or_(console_feed.c.ref.in_(list(chunk)), _contains_any(console_feed.c.data, chunk))
            )
        ).rowcount
        add(counts, {"console_feed.deleted": n})
    add(counts, _scrub_audit(conn, [*ids, *searchable], reference))
    # the core's own rows
    for chunk in _chunks(ids):
        add(
            counts,
            {"touchpoints.deleted": conn.execute(delete(touchpoints).where(t.customer_id.in_(list(chunk)))).rowcount},
        )
        add(
            counts,
            {
                "identities.deleted": conn.execute(
                    delete(identities).where(identities.c.customer_id.in_(list(chunk)))
                ).rowcount
            },
        )
        add(
            counts,
            {"customers.deleted": conn.execute(delete(customers).where(customers.c.id.in_(list(chunk)))).rowcount},
        )
    return counts


def _forget_unsent(conn: Connection, values: set[str], now: datetime) -> dict[str, int]:
    from hub.outbox.messages import recipients

    hits = []
    q = select(outbox.c.id, outbox.c.status, outbox.c.message).where(outbox.c.status.in_(UNSENT))
    for row in conn.execute(q):
        msg = row.message or {}
        try:
            to = set(recipients(msg.get("to")))
        except ValueError:  # sealed with a key this process lacks: cannot be theirs to know
            to = set()
        if to & values or any(v in json.dumps(msg, ensure_ascii=False) for v in values if len(v) >= _MIN_SEARCH):
            hits.append(row)
    return _scrub_rows(conn, hits, now)


def _scrub_audit(conn: Connection, names: Sequence[str], reference: str) -> dict[str, int]:
    """Audit rows about them (a reveal of their phone number, a page of theirs) keep who did what
    and when; the customer becomes the forget's reference."""
    a = console_audit.c
    n = 0
    marker = f"forgotten:{reference}"
    for chunk in _chunks(list(names), 100):
        rows = conn.execute(
            select(a.id, a.target, a.detail).where(or_(a.target.in_(list(chunk)), _contains_any(a.detail, chunk)))
        ).all()
        found = set(chunk)
        for row in rows:
            target = marker if row.target and any(x in row.target for x in found) else row.target
            detail = _replace(row.detail or {}, found, marker)
            conn.execute(sql_update(console_audit).where(a.id == row.id).values(target=target, detail=detail))
            n += 1
    return {"console_audit.scrubbed": n}


def new_reference() -> str:
    """A reference for one forget request: random, so nothing about the person can be derived."""
    return "fg-" + secrets.token_hex(6)


@contextmanager
def transaction(store: Store, *, dry_run: bool) -> Iterator[Connection]:
    """One transaction that commits, or (``dry_run``) always rolls back: a dry run counts exactly
    what the real run would do and changes nothing."""
    with store.engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        except BaseException:
            trans.rollback()
            raise
        if dry_run:
            trans.rollback()
        else:
            trans.commit()


def audit_row(conn: Connection, at: datetime, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    """One line of the console's audit log (ids and counts only)."""
    conn.execute(
        insert(console_audit).values(at=at, actor=actor, action=action, target=target, store=None, detail=detail)
    )


def forget(
    store: Store,
    vault: Vault,
    lookup: Lookup,
    *,
    now: datetime,
    actor: str,
    features: Sequence[Feature],
    namespaces: Iterable[str],
    via: str = "cli",
    dry_run: bool = False,
) -> ForgetReport:
    """Find the customer(s) ``lookup`` names and forget them, in one transaction, with one audit
    row (``privacy.forget``); ``dry_run`` counts and rolls back (no audit row). Raises
    :class:`ForgetError` for malformed input or when no customer matches."""
    reference = new_reference()
    with transaction(store, dry_run=dry_run) as conn:
        ids = find_customers(conn, vault, lookup, namespaces)
        # a phone number no customer has may still sit in raw records (every one quarantined)
        asked = [phone_number(lookup.phone)] if lookup.phone else []
        counts = forget_rows(conn, vault, ids, now, features, reference=reference, also=asked)
        if not ids and not counts:
            what = "phone number" if lookup.phone else "id" + (" in this scope" if lookup.scope else "")
            raise ForgetError(f"no customer has this {what}, and no stored record holds it")
        report = ForgetReport(reference, lookup.by, len(ids), counts, dry_run)
        if not dry_run:
            detail = {"by": lookup.by, "via": via, "customers": len(ids), "counts": dict(sorted(counts.items()))}
            audit_row(conn, now, actor, "privacy.forget", reference, detail)
    if not dry_run:
        log.info(
            "privacy: forgot %d customer(s) found by %s (%s): %d row(s) deleted or scrubbed",
            len(ids),
            lookup.by,
            reference,
            report.total,
        )
    return report


def runtime_features(rt: Any) -> list[Feature]:
    """The Feature objects installed on runtime ``rt``, in install order (their hooks)."""
    from hub.registry import installed_features

    return [i.feature for i in installed_features() if i.feature is not None and i.name in rt.features]


def forget_in(rt: Any, lookup: Lookup, *, actor: str, via: str = "cli", dry_run: bool = False) -> ForgetReport:
    """:func:`forget` on runtime ``rt`` (its store, secret key, namespaces and features)."""
    return forget(
        rt.store,
        Vault(rt.config.secret_key),
        lookup,
        now=rt.clock(),
        actor=actor,
        features=runtime_features(rt),
        namespaces=rt.config.raw.namespaces,
        via=via,
        dry_run=dry_run,
    )


__all__ = [
    "ForgetError",
    "ForgetReport",
    "Lookup",
    "anonymise_doc",
    "expand",
    "find_customers",
    "forget",
    "forget_in",
    "forget_rows",
    "phone_number",
    "scrub_outbox",
]
