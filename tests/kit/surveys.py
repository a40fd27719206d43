"""Helpers of the survey tests: config builder, checkout records, table readers."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

SECRET = "test-secret-key"


BASE_SURVEYS: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "quiet_hours": {"start": "21:30", "end": "08:30"},
    "stores": {"S001": {"name": "徐汇店", "type": "supermarket"}, "S009": {"timezone": "Asia/Urumqi"}},
    "channels": [
        {"channel": "wechat_template", "destination": "wechat", "template": "TPL1", "scope": "wxoa"},
        {"channel": "miniprogram", "destination": "mp", "scope": "wxmp", "page": "pages/survey/index"},
        {"channel": "sms", "destination": "sms", "template": "SMS_1"},
        {"channel": "email", "destination": "email"},
    ],
    "questionnaires": {"retail": "retail"},
    "rules": [
        {
            "name": "after_checkout",
            "questionnaire": "retail",
            "when": {"kind": "transaction"},
            "delay": "30m",
            "expires": "3d",
        }
    ],
}

CHECKOUT_MAPPING = {
    "name": "checkout",
    "kind": "transaction",
    "fields": {
        "occurred_at": {"path": "paid_at", "type": "datetime"},
        "channel": {"path": "channel", "default": "pos"},
        "org.store": "store",
        "org.brand": "brand",
        "order.id": "receipt",
        "order.amount": {"path": "total", "type": "decimal"},
        "order.items": {
            "each": "items",
            "fields": {
                "name": "name",
                "category": "cat",
                "qty": {"path": "qty", "type": "decimal", "default": 1},
                "price": {"path": "price", "type": "decimal"},
            },
        },
        "customer.identities": {"member_id": "member", "phone": "phone", "email": "email"},
    },
}


def config_text(surveys: dict[str, Any] | None = None, **server: Any) -> str:
    """A full cxhub.yaml with recording destinations and a checkout source."""
    data = {
        "secret_key": SECRET,
        "server": {"public_url": "https://cx.example.com", **server},
        "destinations": {n: {"connector": "test_recording"} for n in ("wechat", "mp", "sms", "email")},
        "sources": {
            "pos": {"connector": "webhook", "options": {"secret": "whsec_dGVzdA=="}, "mapping": CHECKOUT_MAPPING},
        },
        "surveys": BASE_SURVEYS if surveys is None else surveys,
    }
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def checkout(
    receipt: str,
    paid_at: str = "2026-11-02T10:00:00+08:00",
    *,
    member: str | None = "M1",
    phone: str | None = "13812345678",
    store: str = "S001",
    items: list[dict[str, Any]] | None = None,
    channel: str = "pos",
    total: str = "60.00",
    email: str | None = None,
) -> dict[str, Any]:
    """A raw checkout record (fresh food + dairy by default)."""
    return {
        "receipt": receipt,
        "paid_at": paid_at,
        "store": store,
        "brand": "cxmart",
        "channel": channel,
        "total": total,
        "member": member,
        "phone": phone,
        "email": email,
        "items": items
        if items is not None
        else [
            {"name": "有机菠菜", "cat": "生鲜", "qty": 2, "price": "12.80"},
            {"name": "鲜牛奶 1L", "cat": "乳制品", "qty": 2, "price": "16.00"},
        ],
    }


def ingest(rt: Any, *records: dict[str, Any]) -> Any:
    """Ingest checkout records through the real pipeline (mapping, identity, hooks)."""
    from hub.sdk.connector import RawRecord

    raws = [RawRecord("pos", r["receipt"], r, rt.clock()) for r in records]
    return rt.ingestor.ingest("pos", rt.mapping("pos"), raws)


def invitations_of(rt: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from hub.features.surveys.schema import invitations

    with rt.store.connect() as conn:
        return [dict(r) for r in conn.execute(select(invitations).order_by(invitations.c.created_at)).mappings()]


def outbox_of(rt: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from hub.store.schema import outbox

    with rt.store.connect() as conn:
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
