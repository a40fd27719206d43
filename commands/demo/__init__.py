"""``cxhub demo``: a small retail scenario through the real pipeline, on SQLite.

Stores, members, checkouts with items in several categories (a jsonl drop synced like any pull
source), reviews pushed to the signed webhook through the real FastAPI app, a bad line and a bad
value that end in quarantine. Feature steps (surveys, cases) run after it when those features are
installed: each has a module here with ``demo_step(rt, console, scenario)`` (``FEATURE_STEPS``).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
# the demo's own webhook secret (config/demo.yaml uses the same default); never a real one
WEBHOOK_SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC0xMjM0NTY3ODkw"  # noqa: S105

#: feature demo steps, run in this order when the feature is installed
FEATURE_STEPS = {"surveys": "commands.demo.surveys", "feedback": "commands.demo.feedback"}

STORES = {
    "S001": {"code": "S001", "name": "徐汇店", "region": "华东", "district": "上海一区"},
    "S002": {"code": "S002", "name": "静安店", "region": "华东", "district": "上海一区"},
    "S003": {"code": "S003", "name": "浦东店", "region": "华东", "district": "上海二区"},
}
#: the demo official account's AppID: members paid with WeChat Pay in it (their openids are its)
DEMO_APPID = "wxdemo0000000001"
MEMBERS = [
    {"number": "M0001", "mobile": "13812345678", "openid": "oDemo0001", "appid": DEMO_APPID, "level": "gold"},
    {"number": "M0002", "mobile": "13900001111", "openid": "oDemo0002", "appid": DEMO_APPID, "level": "silver"},
    {"number": "M0003", "mobile": "13700002222", "level": "regular"},
    {"number": "M0004", "openid": "oDemo0004", "appid": DEMO_APPID, "level": "regular"},
]
ITEMS = {
    "spinach": {"sku": "690001", "name": "有机菠菜", "cat": "10", "price": "12.80"},
    "apples": {"sku": "690010", "name": "红富士苹果", "cat": "11", "price": "19.90"},
    "milk": {"sku": "690002", "name": "鲜牛奶 1L", "cat": "20", "price": "16.00"},
    "yogurt": {"sku": "690020", "name": "原味酸奶", "cat": "20", "price": "9.90"},
    "bread": {"sku": "690030", "name": "全麦面包", "cat": "30", "price": "12.80"},
    "tissue": {"sku": "690040", "name": "抽纸 6 包", "cat": "40", "price": "24.90"},
    "earbuds": {"sku": "690050", "name": "蓝牙耳机", "cat": "50", "price": "199.00"},
}


def _checkout(
    n: int, store: str, member: dict[str, Any] | None, basket: list[tuple[str, int]], at: datetime
) -> dict[str, Any]:
    from decimal import Decimal

    items: list[dict[str, Any]] = [{**ITEMS[k], "qty": q} for k, q in basket]
    total = sum((Decimal(str(i["price"])) * int(i["qty"]) for i in items), Decimal(0))
    rec: dict[str, Any] = {
        "receipt_no": f"R-{n:05d}",
        "status": "PAID",
        "paid_at": at.astimezone(UTC).isoformat(),
        "store": STORES[store],
        "cashier": f"E{n % 5:02d}",
        "total": str(total),
        "pay_method": "wechat" if member and member.get("openid") else "cash",
        "items": items,
    }
    if member:
        rec["member"] = member
    return rec


def scenario(now: datetime) -> dict[str, Any]:
    """The demo's data, with times just before ``now``."""
    t = now - timedelta(minutes=40)
    checkouts = [
        _checkout(1, "S001", MEMBERS[0], [("spinach", 2), ("milk", 3), ("yogurt", 2)], t),
        _checkout(2, "S001", MEMBERS[1], [("apples", 1), ("bread", 1)], t + timedelta(minutes=1)),
        _checkout(3, "S002", MEMBERS[2], [("tissue", 2), ("milk", 1)], t + timedelta(minutes=2)),
        _checkout(4, "S003", MEMBERS[3], [("earbuds", 1)], t + timedelta(minutes=3)),
        _checkout(5, "S002", None, [("bread", 2)], t + timedelta(minutes=4)),
        # the same member pays again with only their phone: identity resolution joins them
        _checkout(6, "S003", {"mobile": "+86 138-1234-5678"}, [("yogurt", 4)], t + timedelta(minutes=5)),
    ]
    bad_value = _checkout(7, "S001", None, [("milk", 1)], t + timedelta(minutes=6))
    bad_value["total"] = "八十六"  # not a number: quarantined with the reason
    reviews = [
        {
            "review_id": "RV-1",
            "created_at": (t + timedelta(minutes=20)).isoformat(),
            "platform": "meituan",
            "store_code": "S001",
            "store_name": "徐汇店",
            "order_id": "R-00001",
            "rating": 1,
            "content": "买的鲜牛奶已经过期了，打电话 13812345678 也没人管，要投诉！",
            "member_no": "M0001",
        },
        {
            "review_id": "RV-2",
            "created_at": (t + timedelta(minutes=21)).isoformat(),
            "platform": "dianping",
            "store_code": "S002",
            "store_name": "静安店",
            "rating": 5,
            "content": "店员很热情，面包新鲜。",
        },
        {
            "review_id": "RV-3",
            "created_at": (t + timedelta(minutes=22)).isoformat(),
            "platform": "meituan",
            "store_code": "S003",
            "store_name": "浦东店",
            "rating": 4,
            "content": "耳机不错，就是排队有点久。",
        },
    ]
    return {"checkouts": checkouts, "bad_value": bad_value, "reviews": reviews}


def _signed_headers(body: bytes, msg_id: str, when: datetime) -> dict[str, str]:
    from standardwebhooks.webhooks import Webhook

    sig = Webhook(os.environ.get("CXHUB_DEMO_WEBHOOK_SECRET", WEBHOOK_SECRET)).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": sig,
        "content-type": "application/json",
    }


def run_demo(console: Console, *, config_path: Path | None = None, workdir: Path = Path("demo-out")) -> None:
    """Run the demo in ``workdir`` (recreated), printing what each step stored."""
    # the demo drives the app in-process through Starlette's TestClient; its deprecation notice about
    # the HTTP client it uses says nothing to someone watching the demo
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    started = time.monotonic()  # the whole demo: fakes, migrations and every step
    from commands.demo.fake_dingtalk import FakeDingTalkRobot
    from commands.demo.fake_wechat import FakeWeChat

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    os.environ["CXHUB_DEMO_DIR"] = str(workdir.resolve())
    os.environ["CXHUB_STORE_URL"] = f"sqlite:///{(workdir / 'cxhub.db').resolve()}"
    # the store's DingTalk group robot, played locally: it checks the 加签 signature like DingTalk
    token = os.environ.setdefault("CXHUB_DEMO_ROBOT_TOKEN", "demo-robot-token")
    secret = os.environ.setdefault("CXHUB_DEMO_ROBOT_SECRET", "SECdemo-robot-secret")
    # the official account's message API (token endpoint included), played locally: survey
    # invitations go to it through the real wechat_message connector
    wx_secret = os.environ.setdefault("CXHUB_DEMO_WECHAT_SECRET", "demo-wechat-secret")
    with FakeDingTalkRobot({token: secret}) as robot, FakeWeChat({"wxdemo0000000001": wx_secret}) as wechat:
        os.environ["CXHUB_DEMO_ROBOT_URL"] = robot.base_url
        os.environ["CXHUB_DEMO_WECHAT_URL"] = wechat.base_url
        _run(console, config_path or DEMO_CONFIG, workdir, robot, wechat)
    console.rule()
    env = f"CXHUB_STORE_URL=sqlite:///{(workdir / 'cxhub.db').resolve()} CXHUB_DEMO_DIR={workdir} CXHUB_SECRET_KEY=..."
    console.print(
        f"demo finished in {time.monotonic() - started:.1f}s; store: {workdir / 'cxhub.db'}; "
        f"try: {env} cxhub events -c config/demo.yaml",
        soft_wrap=True,
    )
    console.print(
        f"the web console on this store: {env} cxhub users add me --role admin -c config/demo.yaml, then the "
        "same with cxhub run -c config/demo.yaml, and open http://127.0.0.1:8080/console",
        soft_wrap=True,
    )


def _run(console: Console, config_path: Path, workdir: Path, robot: Any, wechat: Any = None) -> None:
    from fastapi.testclient import TestClient

    from hub.config import load_config
    from hub.runtime import Runtime
    from hub.store.schema import customers, inbox, quarantine, touchpoints
    from hub.sync import run_sync
    from hub.web import create_app

    cfg = load_config(config_path)
    rt = Runtime(cfg)
    rt.migrate()
    now = rt.clock()
    data = scenario(now)
    data["robot"] = robot
    data["wechat"] = wechat

    console.rule("[bold]1. POS checkouts: a jsonl drop synced like any pull source")
    with (workdir / "checkouts.jsonl").open("w", encoding="utf-8") as fh:
        for rec in [*data["checkouts"], data["bad_value"]]:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.write('{"receipt_no": "R-00008", "status": "PAID", "total": \n')  # a broken line
    result = run_sync(rt, "pos_checkouts")
    console.print(f"sync pos_checkouts: {result.summary()}")
    again = run_sync(rt, "pos_checkouts")
    console.print(f"sync again (cursor resumes, nothing new): {again.summary()}")

    console.rule("[bold]2. Reviews pushed to the signed webhook (real FastAPI app)")
    with TestClient(create_app(rt)) as client:
        for rv in data["reviews"]:
            body = json.dumps(rv, ensure_ascii=False).encode()
            r = client.post(
                "/hooks/reviews", content=body, headers=_signed_headers(body, f"msg_{rv['review_id']}", now)
            )
            console.print(f"POST /hooks/reviews {rv['review_id']} -> {r.status_code} {r.text}")
        body = json.dumps(data["reviews"][0], ensure_ascii=False).encode()
        r = client.post("/hooks/reviews", content=body, headers=_signed_headers(body, "msg_RV-1", now))
        console.print(f"the platform retries RV-1 -> {r.status_code} (deduplicated, stored once)")
        forged = _signed_headers(body, "msg_forged", now)
        forged["webhook-signature"] = "v1,Zm9yZ2Vk"
        r = client.post("/hooks/reviews", content=body, headers=forged)
        console.print(f"a forged signature -> {r.status_code} {r.text.strip()} (nothing stored)")

    with rt.store.connect() as conn:
        table = Table("source", "kind", "touchpoints", title="What was stored")
        q = select(touchpoints.c.source, touchpoints.c.kind, func.count()).group_by(
            touchpoints.c.source, touchpoints.c.kind
        )
        for src, kind, n in conn.execute(q.order_by(touchpoints.c.source)):
            table.add_row(src, kind, str(n))
        console.print(table)
        n_customers = conn.execute(
            select(func.count()).select_from(customers).where(customers.c.merged_into.is_(None))
        ).scalar()
        n_inbox = conn.execute(select(func.count()).select_from(inbox)).scalar()
        console.print(
            f"{n_inbox} raw records in the inbox, {n_customers} distinct customers after identity resolution "
            "(phone numbers stored only as keyed hashes)"
        )
        qt = Table("id", "source", "external id", "reason", title="Quarantine (fix the mapping, then `cxhub replay`)")
        for row in conn.execute(select(quarantine).where(quarantine.c.status == "open")).mappings():
            qt.add_row(str(row["id"]), row["source"], row["external_id"] or "", row["reason"])
        console.print(qt)

    for feature, module in FEATURE_STEPS.items():
        if feature in rt.features:
            importlib.import_module(module).demo_step(rt, console, data)

    rt.close()
