"""A typical POS schema (stores, members, staff ids, orders, order_lines, products, categories) on
SQLite, PostgreSQL or MariaDB, its seed data, and the cxhub source config that reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    text,
)

from hub.privacy import Vault

if TYPE_CHECKING:
    from hub.runtime import Runtime

SECRET = b"test-secret-key"


@dataclass
class SourceDb:
    """Where a test's POS schema lives."""

    dialect: str
    url: str
    schema: str | None


RuntimeFactory = Callable[..., Any]

BASE_TIME = datetime(2026, 11, 2, 9, 0, 0)
CATEGORIES = [(1, "01", "生鲜"), (2, "02", "乳制品"), (3, "03", "家电"), (4, "04", "日用品")]


def pos_metadata(schema: str | None = None) -> MetaData:
    md = MetaData(schema=schema)
    Table(
        "stores",
        md,
        Column("store_id", Integer, primary_key=True),
        Column("store_code", String(16), nullable=False),
        Column("name", String(64)),
        Column("region", String(32)),
        Column("brand", String(32)),
    )
    Table(
        "members",
        md,
        Column("member_id", Integer, primary_key=True),
        Column("member_no", String(32), nullable=False),
        Column("mobile", String(20)),
        Column("level", String(16)),
        Column("registered_at", DateTime),
        Column("updated_at", DateTime, nullable=False),
    )
    Table(
        "categories",
        md,
        Column("category_id", Integer, primary_key=True),
        Column("code", String(8)),
        Column("name", String(32)),
    )
    Table(
        "products",
        md,
        Column("product_id", Integer, primary_key=True),
        Column("sku", String(32)),
        Column("name", String(64)),
        Column(
            "category_id",
            Integer,
            ForeignKey("categories.category_id" if not schema else f"{schema}.categories.category_id"),
        ),
    )
    Table(
        "orders",
        md,
        Column("order_id", Integer, primary_key=True, autoincrement=False),
        Column("order_no", String(32)),
        Column("store_id", Integer, nullable=False),
        Column("member_id", Integer),
        Column("staff_id", Integer),
        Column("terminal_id", String(8)),
        Column("pay_method", String(16)),
        Column("status", String(8), nullable=False),
        Column("total_amount", String(16)),  # text on purpose: a legacy POS with a bad value in it
        Column("paid_at", DateTime),
        Column("updated_at", DateTime, nullable=False),
        Index("ix_orders_cursor", "updated_at", "order_id"),
    )
    Table(
        "order_lines",
        md,
        Column("line_id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, nullable=False, index=True),
        Column("line_no", Integer, nullable=False),
        Column("product_id", Integer, nullable=False),
        Column("qty", Numeric(10, 3), nullable=False),
        Column("unit_price", Numeric(10, 2), nullable=False),
        Column("amount", Numeric(12, 2), nullable=False),
    )
    return md


def engine_for(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url)


def create_pos(url: str, schema: str | None = None) -> Engine:
    """(Re)create the POS tables and the reference rows (stores, members, categories, products)."""
    eng = engine_for(url)
    md = pos_metadata(schema)
    with eng.begin() as conn:
        if schema:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        else:
            md.drop_all(conn)
        md.create_all(conn)
        t = md.tables
        p = f"{schema}." if schema else ""
        conn.execute(
            t[p + "stores"].insert(),
            [
                {"store_id": 1, "store_code": "SH001", "name": "上海徐汇店", "region": "华东", "brand": "好邻居"},
                {"store_id": 2, "store_code": "BJ001", "name": "北京朝阳店", "region": "华北", "brand": "好邻居"},
            ],
        )
        conn.execute(
            t[p + "members"].insert(),
            [
                {
                    "member_id": i,
                    "member_no": f"M{i:06d}",
                    "mobile": f"138{i:08d}",
                    "level": "gold" if i % 2 else "silver",
                    "registered_at": BASE_TIME - timedelta(days=100 + i),
                    "updated_at": BASE_TIME + timedelta(minutes=i),
                }
                for i in range(1, 21)
            ],
        )
        conn.execute(t[p + "categories"].insert(), [{"category_id": c, "code": k, "name": n} for c, k, n in CATEGORIES])
        conn.execute(
            t[p + "products"].insert(),
            [
                {"product_id": i, "sku": f"69{i:05d}", "name": f"商品{i}", "category_id": (i % len(CATEGORIES)) + 1}
                for i in range(1, 41)
            ],
        )
    return eng


def order_rows(
    first: int, count: int, *, at: datetime = BASE_TIME, same_time: bool = False, lines: int = 3
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``count`` paid orders from id ``first``, each with ``lines`` lines (amount = sum of lines)."""
    orders, order_lines = [], []
    for oid in range(first, first + count):
        total = Decimal(0)
        for ln in range(1, lines + 1):
            pid = (oid * 7 + ln) % 40 + 1
            qty = Decimal(ln)
            price = Decimal(pid) + Decimal("0.50")
            total += qty * price
            order_lines.append(
                {
                    "line_id": oid * 10 + ln,
                    "order_id": oid,
                    "line_no": ln,
                    "product_id": pid,
                    "qty": qty,
                    "unit_price": price,
                    "amount": qty * price,
                }
            )
        ts = at if same_time else at + timedelta(seconds=oid)
        orders.append(
            {
                "order_id": oid,
                "order_no": f"S{oid:08d}",
                "store_id": 1 + oid % 2,
                "member_id": (oid % 25) if oid % 25 <= 20 and oid % 25 else None,
                "staff_id": 100 + oid % 5,
                "terminal_id": f"T{oid % 3}",
                "pay_method": "wechat" if oid % 2 else "alipay",
                "status": "PAID",
                "total_amount": str(total),
                "paid_at": ts,
                "updated_at": ts,
            }
        )
    return orders, order_lines


def insert_orders(
    eng: Engine, orders: list[dict[str, Any]], lines: list[dict[str, Any]], schema: str | None = None
) -> None:
    md = pos_metadata(schema)
    p = f"{schema}." if schema else ""
    with eng.begin() as conn:
        if orders:
            conn.execute(md.tables[p + "orders"].insert(), orders)
        if lines:
            conn.execute(md.tables[p + "order_lines"].insert(), lines)


def header_query(schema: str | None = None) -> str:
    p = f"{schema}." if schema else ""
    return f"""
SELECT o.order_id, o.order_no, o.paid_at, o.updated_at, o.total_amount, o.staff_id, o.terminal_id, o.pay_method,
       s.store_code, s.name AS store_name, s.region, s.brand,
       m.member_no, m.mobile, m.level AS member_level
FROM {p}orders o
JOIN {p}stores s ON s.store_id = o.store_id
LEFT JOIN {p}members m ON m.member_id = o.member_id
WHERE o.status = 'PAID'
"""


def lines_query(schema: str | None = None) -> str:
    p = f"{schema}." if schema else ""
    return f"""
SELECT l.order_id, l.line_no, p.sku, p.name AS product_name, c.name AS category_name,
       l.qty, l.unit_price, l.amount AS line_amount
FROM {p}order_lines l
JOIN {p}products p ON p.product_id = l.product_id
LEFT JOIN {p}categories c ON c.category_id = p.category_id
"""


def joined_query(schema: str | None = None) -> str:
    p = f"{schema}." if schema else ""
    return f"""
SELECT o.order_id, o.order_no, o.paid_at, o.updated_at, o.total_amount, o.staff_id, o.terminal_id, o.pay_method,
       s.store_code, s.name AS store_name, s.region, s.brand,
       m.member_no, m.mobile, m.level AS member_level,
       l.line_no, p.sku, p.name AS product_name, c.name AS category_name, l.qty, l.unit_price, l.amount AS line_amount
FROM {p}orders o
JOIN {p}stores s ON s.store_id = o.store_id
LEFT JOIN {p}members m ON m.member_id = o.member_id
LEFT JOIN {p}order_lines l ON l.order_id = o.order_id
LEFT JOIN {p}products p ON p.product_id = l.product_id
LEFT JOIN {p}categories c ON c.category_id = p.category_id
WHERE o.status = 'PAID'
"""


LINE_COLUMNS = ["line_no", "sku", "product_name", "category_name", "qty", "unit_price", "line_amount"]


def pos_options(url: str, schema: str | None = None, *, mode: str = "children", **extra: Any) -> dict[str, Any]:
    """Options of a ``sql`` source over the POS schema (children mode or one joined query)."""
    base: dict[str, Any] = {"url": url, "cursor": ["updated_at", "order_id"], "id": ["order_no"]}
    if mode == "children":
        base["query"] = header_query(schema)
        base["children"] = {"lines": {"query": lines_query(schema), "key": "order_id", "order_by": ["line_no"]}}
    else:
        base["query"] = joined_query(schema)
        base["group_by"] = ["order_id"]
        base["line_columns"] = LINE_COLUMNS
    base.update(extra)
    return base


# ---------------------------------------------------------------- comparing two stores


def _utc(value: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives naive UTC text to a raw query)."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def store_snapshot(store: Any, *, receipts: bool = False) -> dict[str, Any]:
    """What the store holds, free of what differs by nature between two runs (random customer
    ids, encryption nonces, and receipt times unless ``receipts``): customers as the partition of
    touchpoints and identities they make."""
    vault = Vault(SECRET)
    received = ", received_at" if receipts else ""
    with store.engine.connect() as conn:
        tps = conn.execute(
            text(f"SELECT external_id, kind, channel, occurred_at, store, customer_id, doc{received} FROM touchpoints")
        ).all()
        idents = conn.execute(text("SELECT namespace, scope, value, customer_id, contact FROM identities")).all()
        inbox = conn.execute(text(f"SELECT external_id, status, touchpoint_id{received} FROM inbox")).all()
        quarantine = conn.execute(text("SELECT external_id, stage, reason, payload FROM quarantine")).all()
    docs = {}
    groups: dict[str | None, set[str]] = {}
    for ext, kind, channel, occurred, store_code, cid, doc, *at in tps:
        parsed = doc if isinstance(doc, dict) else orjson.loads(doc)
        assert parsed["customer"]["customer_id"] == cid
        received_at = parsed.pop("received_at")
        if receipts:
            assert datetime.fromisoformat(received_at) == _utc(at[0])
            parsed["received_at"] = received_at
        parsed["customer"].pop("customer_id")
        attrs = parsed.get("attributes") or {}
        if attrs.get("sealed_phones"):  # encrypted with a fresh nonce each time: compared in clear
            attrs["sealed_phones"] = [vault.decrypt(t) for t in attrs["sealed_phones"]]
        docs[ext] = (kind, channel, _utc(occurred), store_code, parsed)
        groups.setdefault(cid, set()).add("tp:" + ext)
    for ns, scope, value, cid, _contact in idents:
        groups.setdefault(cid, set()).add(f"id:{ns}:{scope}:{value}")
    contacts = {(ns, scope, value): (vault.decrypt(c) if c else None) for ns, scope, value, _, c in idents}

    def payload(p: Any) -> Any:
        return p if not isinstance(p, str) else orjson.loads(p)

    return {
        "touchpoints": docs,
        "customers": sorted(sorted(g) for cid, g in groups.items() if cid is not None),
        "contacts": contacts,
        "inbox": sorted((*r[:3], _utc(r[3])) if receipts else tuple(r) for r in inbox),
        "quarantine": sorted(
            (e or "", s, r, orjson.dumps(payload(p), option=orjson.OPT_SORT_KEYS)) for e, s, r, p in quarantine
        ),
    }


def reset_store(store: Any) -> None:
    from hub.store.schema import metadata

    with store.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def source_runtime(
    tmp_path: Path, store_url: str, name: str, connector: str, mapping: Path, options: dict[str, Any]
) -> Runtime:
    """A runtime (no features) storing into ``store_url`` with one source ``name``."""
    from kit.runtime import build_runtime

    cfg = {
        "secret_key": SECRET.decode(),
        "store": {"url": store_url},
        "sources": {name: {"connector": connector, "mapping": str(mapping), "options": options}},
    }
    return build_runtime(cfg, path=tmp_path / "cxhub.yaml", features=())
