"""A hub full of one customer's personal data, for the retention and forget tests.

``privacy_hub(tmp_path, store, clock)`` -> :class:`PrivacyHub`: surveys, feedback and customers
installed; raw payloads kept; the customer to forget (``PHONE``, ``OPENID``, ``MEMBER``) bought,
was invited to a survey, answered it, wrote a negative review (a case, a staff card), had a record
quarantined, was scored and looked at in the console; another customer (``OTHER_PHONE``) did the
same and must stay. :func:`tables_holding` scans every text and JSON column of every table of the
database (reflected, so a table added later is scanned too) for a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import JSON, MetaData, String, Text, cast, func, select

from hub.privacy import Vault
from hub.runtime import Runtime
from hub.sdk.connector import RawRecord
from hub.store import Store
from kit.console import console_config
from kit.runtime import build_runtime
from kit.surveys import BASE_SURVEYS, CHECKOUT_MAPPING

SECRET = "test-secret-key"
PHONE = "13812345678"
OPENID = "oFORGETme0123456789"
MEMBER = "MEMBER-FORGET-0001"
OTHER_PHONE = "13900001111"
OTHER_OPENID = "oSTAYS0123456789"
OTHER_MEMBER = "MEMBER-STAYS-0002"

MAPPING = {**CHECKOUT_MAPPING}
MAPPING["fields"] = {
    **CHECKOUT_MAPPING["fields"],
    "customer.identities": {"member_id": "member", "phone": "phone", "openid": {"path": "openid", "scope": "app"}},
}


def config(db: str, *, privacy: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = console_config(db)
    cfg["store"]["keep_raw_payloads"] = True
    cfg["destinations"].update(
        {
            n: {
                "connector": "dingtalk_robot",
                "options": {"access_token": "t", "secret": "SECx", "base_url": "http://127.0.0.1:9"},
            }
            for n in ("wechat", "mp", "sms", "email")
        }
    )
    cfg["sources"]["pos"] = {"connector": "webhook", "options": {"secret": "whsec_dGVzdA=="}, "mapping": MAPPING}
    cfg["surveys"] = BASE_SURVEYS
    if privacy is not None:
        cfg["privacy"] = privacy
    return cfg


def checkout(
    receipt: str, *, phone: str, openid: str, member: str, total: str = "60.00", paid_at: str | None = None
) -> dict[str, Any]:
    return {
        "receipt": receipt,
        "paid_at": paid_at or "2026-11-02T10:00:00+08:00",
        "store": "S001",
        "brand": "cxmart",
        "channel": "pos",
        "total": total,
        "member": member,
        "phone": phone,
        "openid": openid,
        "app": "wxoa",
        "items": [{"name": "鲜牛奶 1L", "cat": "乳制品", "qty": 2, "price": "16.00"}],
    }


def review(n: str, *, phone: str, member: str) -> dict[str, Any]:
    return {
        "review_id": f"rv-{n}",
        "created_at": "2026-11-02T10:05:00+08:00",
        "platform": "meituan",
        "store_code": "S001",
        "store_name": "徐汇店",
        "order_id": f"O-{n}",
        "rating": 1,
        "content": f"牛奶是坏的，店员态度很差，打电话 {phone} 给我",
        "member_no": member,
        "mobile": phone,
    }


class PrivacyHub:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.vault = Vault(SECRET.encode())

    def ingest(self, source: str, *records: dict[str, Any], key: str) -> Any:
        raws = [RawRecord(source, str(r[key]), r, self.rt.clock()) for r in records]
        return self.rt.ingestor.ingest(source, self.rt.mapping(source), raws)

    def customer_of(self, phone: str) -> str:
        from hub.store.schema import identities

        with self.rt.store.connect() as conn:
            return str(
                conn.execute(
                    select(identities.c.customer_id).where(
                        identities.c.namespace == "phone", identities.c.value == self.vault.hash("phone", phone)
                    )
                ).scalar_one()
            )

    def answer(self, phone: str, nps: int) -> None:
        """The customer answers their survey invitation on the hosted page (NPS ``nps``)."""
        from hub.features.surveys.schema import invitations
        from hub.features.surveys.web import response_payload

        cid = self.customer_of(phone)
        with self.rt.store.connect() as conn:
            inv = dict(conn.execute(select(invitations).where(invitations.c.customer_id == cid)).mappings().one())
        answers = {q["id"]: (nps if q["type"] == "nps" else None) for q in inv["doc"].get("questions", [])}
        answers = {k: v for k, v in answers.items() if v is not None}
        payload = response_payload(inv, answers, self.rt.clock().isoformat())
        payload["text"] = f"很好，有事打 {phone}"
        feature = self.rt.features["surveys"]
        record = RawRecord(feature.config.page.source, inv["id"], payload, self.rt.clock())
        result = self.rt.ingestor.ingest(feature.config.page.source, feature.page_mapping, [record])
        assert result.stored == 1, result

    def fill(self) -> None:
        """Both customers' data everywhere (see the module docstring)."""
        from hub.console.accounts import audit
        from hub.features.customers.schema import customer_scores

        for phone, openid, member, n in ((PHONE, OPENID, MEMBER, "1"), (OTHER_PHONE, OTHER_OPENID, OTHER_MEMBER, "2")):
            assert (
                self.ingest("pos", checkout(f"R{n}", phone=phone, openid=openid, member=member), key="receipt").stored
                == 1
            )
            assert self.ingest("reviews", review(n, phone=phone, member=member), key="review_id").stored == 1
            bad = checkout(f"Q{n}", phone=phone, openid=openid, member=member, total="not a number")
            assert self.ingest("pos", bad, key="receipt").quarantined == 1
        self.rt.clock.advance(hours=1)  # type: ignore[attr-defined]
        self.answer(PHONE, 10)
        self.answer(OTHER_PHONE, 3)
        now = self.rt.clock()
        cids = [self.customer_of(phone) for phone in (PHONE, OTHER_PHONE)]
        with self.rt.store.begin() as conn:
            for cid in cids:
                conn.execute(
                    customer_scores.insert(),
                    {
                        "customer_id": cid,
                        "scored_at": now,
                        "store": "S001",
                        "purchases": 1,
                        "x": 0,
                        "t_x": 0.0,
                        "t_obs": 1.0,
                        "spend": 60.0,
                        "refunds": 0,
                        "value_at_risk": 0.0,
                        "risk": 0.1,
                        "insufficient": True,
                        "reasons": [],
                        "signals": {},
                    },
                )
                audit(conn, now, "admin", "customer.view", cid, {"customer": cid}, store="S001")


def privacy_hub(tmp_path: Path, store: Store, clock: Any, *, privacy: dict[str, Any] | None = None) -> PrivacyHub:
    text = yaml.safe_dump(config(store.url, privacy=privacy), allow_unicode=True, sort_keys=False)
    rt = build_runtime(text, path=tmp_path / "cxhub.yaml", store=store, clock=clock)
    return PrivacyHub(rt)


def tables_holding(store: Store, value: str) -> dict[str, int]:
    """Every (table.column) of the database whose text or JSON holds ``value``, with the rows."""
    md = MetaData()
    md.reflect(store.engine)
    found: dict[str, int] = {}
    with store.connect() as conn:
        for table in md.sorted_tables:
            if table.name == "alembic_version":
                continue
            for col in table.columns:
                type_name = type(col.type).__name__.upper()
                if not (isinstance(col.type, String | Text | JSON) or "JSON" in type_name or "TEXT" in type_name):
                    continue
                n = conn.execute(
                    select(func.count()).select_from(table).where(cast(col, Text).contains(value, autoescape=True))
                ).scalar_one()
                if n:
                    found[f"{table.name}.{col.name}"] = n
    return found
