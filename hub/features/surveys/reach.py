"""Reachability: the channels a customer can be reached on, from their stored identities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from hub.features.surveys.config import ChannelConfig
from hub.features.surveys.lookups import among, batches
from hub.model import TouchpointEvent
from hub.privacy import SENSITIVE_NAMESPACES, Vault, mask_identity
from hub.store.schema import identities

log = logging.getLogger("cxhub.surveys")


@dataclass(frozen=True)
class Reach:
    """A way to reach the customer on one channel: ``to`` is the address the destination needs."""

    channel: ChannelConfig
    to: str
    masked: str


def form_id_of(ev: TouchpointEvent, path: str) -> str | None:
    """The value at ``path`` of the touchpoint (``attributes.trade_no``, ``order.id``) as text, or None."""
    value: Any = ev
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    text_ = str(value).strip()
    return text_ or None


def needs_form_id(ch: ChannelConfig) -> bool:
    """Whether messages on ``ch`` need a form id from the transaction (Alipay's template message)."""
    return ch.channel == "alipay"


def _identity_query(conn: Connection, customer_ids: Sequence[str]) -> Any:
    # newest identity first; namespace/scope/value break ties so the choice is deterministic
    return (
        select(
            identities.c.customer_id,
            identities.c.namespace,
            identities.c.scope,
            identities.c.value,
            identities.c.contact,
        )
        .where(among(conn, identities.c.customer_id, customer_ids))
        .order_by(
            identities.c.customer_id,
            identities.c.first_seen.desc(),
            identities.c.namespace,
            identities.c.scope,
            identities.c.value,
        )
    )


def identity_rows(conn: Connection, customer_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Every identity of each customer (newest first), one query per chunk of customers."""
    out: dict[str, list[Any]] = {}
    for chunk in batches(conn, sorted(set(customer_ids))):
        for r in conn.execute(_identity_query(conn, chunk)):
            out.setdefault(r.customer_id, []).append(r)
    return out


def reach_from(rows: Sequence[Any], vault: Vault, customer_id: str, channels: Sequence[ChannelConfig]) -> list[Reach]:
    """The channels (in order) a customer with these identity rows can be reached on."""
    out: list[Reach] = []
    for ch in channels:
        ns = ch.identity_namespace
        for r in rows:
            # a channel limited to one app reaches that app's identities only; a channel with no
            # scope reaches only identities with none (never an openid of some other app)
            if r.namespace != ns or r.scope != (ch.scope or ""):
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


def reachable(conn: Connection, vault: Vault, customer_id: str, channels: Sequence[ChannelConfig]) -> list[Reach]:
    """The channels (in order) the customer can be reached on, from their identities."""
    rows = identity_rows(conn, [customer_id]).get(customer_id, [])
    return reach_from(rows, vault, customer_id, channels)
