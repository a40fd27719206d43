"""The customer-touchpoint model: every event from every source becomes a ``TouchpointEvent``.

Core fields are a contract; ``attributes`` is free for whatever a source has beyond them.
Times are aware and normalised to UTC; money is ``Decimal``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# Fixed namespace so that ids are stable across processes, versions and machines.
TOUCHPOINT_NAMESPACE = uuid.UUID("6f1c1b7e-3c55-4d0a-9a8f-2d0c6f9c1a10")


_NAMESPACE_BYTES = TOUCHPOINT_NAMESPACE.bytes
_VARIANT = "89ab89ab89ab89ab"  # RFC 4122 variant bits over the 17th hex digit


def uuid_text(hex32: str, version: int) -> str:
    """The canonical text of the UUID made of 32 hex digits (a hash, random bytes) with
    ``version`` and the RFC 4122 variant set, as ``str(uuid.UUID(hex=..., version=...))`` gives,
    without building the UUID object (which is most of ``uuid.uuid4()`` / ``uuid5()``'s time)."""
    h = hex32
    return f"{h[:8]}-{h[8:12]}-{version}{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:32]}"


def touchpoint_id(source: str, external_id: str) -> str:
    """Deterministic id of the event ``external_id`` from ``source``: the uuid5 of the name
    ``source + "\\x1f" + external_id`` in ``TOUCHPOINT_NAMESPACE``, written out from the SHA-1
    directly (a third of ``str(uuid.uuid5(...))``'s time, which is paid once per event)."""
    name = _NAMESPACE_BYTES + f"{source}\x1f{external_id}".encode()
    return uuid_text(hashlib.sha1(name, usedforsecurity=False).hexdigest(), 5)  # uuid5 is SHA-1 by definition


class EventKind(StrEnum):
    """What kind of touchpoint this is."""

    transaction = "transaction"
    refund = "refund"
    review = "review"
    survey_response = "survey_response"
    message = "message"
    follow = "follow"
    unfollow = "unfollow"
    service_contact = "service_contact"
    card_action = "card_action"
    member = "member"
    other = "other"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Identity(_Model):
    """One identifier of a customer in a namespace (openid, unionid, alipay_uid, phone, member_id...)."""

    namespace: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=512)
    # the app / corp the identifier belongs to (openids are per app)
    scope: str | None = None


class Customer(_Model):
    """Who: the identities that arrived with the event, and the customer they resolve to."""

    identities: list[Identity] = Field(default_factory=list)
    customer_id: str | None = None
    name: str | None = None
    member_level: str | None = None


class Org(_Model):
    """Where: what routing needs (brand / region / district / store / staff)."""

    brand: str | None = None
    region: str | None = None
    district: str | None = None
    store: str | None = None
    store_name: str | None = None
    staff: str | None = None


class OrderItem(_Model):
    """One line of an order."""

    sku: str | None = None
    name: str | None = None
    category: str | None = None
    qty: Decimal = Decimal(1)
    price: Decimal | None = None
    amount: Decimal | None = None


class Order(_Model):
    """The order a transaction, refund or review is about."""

    id: str | None = None
    amount: Decimal | None = None
    currency: str = "CNY"
    items: list[OrderItem] = Field(default_factory=list)


class Feedback(_Model):
    """What the customer said. ``rating`` is on ``rating_scale`` (1..scale)."""

    rating: Decimal | None = None
    rating_scale: int = Field(default=5, ge=1, le=100)
    nps: int | None = Field(default=None, ge=0, le=10)
    csat: int | None = Field(default=None, ge=1, le=5)
    ces: int | None = Field(default=None, ge=1, le=7)
    text: str | None = None
    language: str | None = None
    sentiment: float | None = Field(default=None, ge=-1, le=1)
    topics: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rating_in_scale(self) -> Feedback:
        if self.rating is not None and not (0 <= self.rating <= self.rating_scale):
            raise ValueError(f"rating {self.rating} is outside the scale 0..{self.rating_scale}")
        return self

    @property
    def rating5(self) -> Decimal | None:
        """The rating normalised to a 1-5 scale."""
        if self.rating is None:
            return None
        if self.rating_scale == 5:
            return self.rating
        return (self.rating * 5 / self.rating_scale).quantize(Decimal("0.01"))


class TouchpointEvent(_Model):
    """One customer touchpoint, whatever the source."""

    id: str = ""
    source: str = Field(min_length=1)
    external_id: str = Field(min_length=1, max_length=512)
    kind: EventKind
    channel: str | None = None
    occurred_at: AwareDatetime
    received_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    customer: Customer = Field(default_factory=Customer)
    org: Org = Field(default_factory=Org)
    order: Order | None = None
    feedback: Feedback | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    raw_ref: str | None = None

    @model_validator(mode="after")
    def _normalise(self) -> TouchpointEvent:
        # one Python-level validator for the whole event (each one costs a call per event):
        # times in UTC, and the id derived from (source, external_id)
        if self.occurred_at.utcoffset():
            self.occurred_at = self.occurred_at.astimezone(UTC)
        if self.received_at.utcoffset():
            self.received_at = self.received_at.astimezone(UTC)
        expected = touchpoint_id(self.source, self.external_id)
        if not self.id:
            self.id = expected
        elif self.id != expected:
            raise ValueError(f"id {self.id!r} is not the id of ({self.source!r}, {self.external_id!r})")
        return self

    @property
    def categories(self) -> list[str]:
        """Distinct item categories, in basket order."""
        seen: dict[str, None] = {}
        for item in self.order.items if self.order else []:
            if item.category:
                seen.setdefault(item.category, None)
        return list(seen)


def touchpoint_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``TouchpointEvent`` (``cxhub schema``)."""
    return TouchpointEvent.model_json_schema()
