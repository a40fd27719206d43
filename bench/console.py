"""The console under load: every page and API route at 20 concurrent users, and the live stream.

Seeds a throwaway PostgreSQL database (127.0.0.1:5432, created and dropped here) with the schema of
the real migrations and, through COPY: 1M touchpoints (reviews, purchases, survey answers), 100k
survey answers with their invitations, 10k cases over 200 stores in an org of 4 regions and 20
districts, 100k customers. Starts ``cxhub run`` on it, signs in 20 users of every role and scope
(httpx async clients, each its own session), and has them walk every GET route of the console that
their role may read (found from the app, not listed here) for ``--seconds``, each pausing a think
time between two requests (``--think``, mean 1 s, uniform between half and one and a half of it:
a person reading a page; ``--think 0`` fires requests back to back, a saturation test whose
latency is the queue of 20 clients over the process's throughput). Meanwhile a store
manager's browser-like client holds ``/console/events`` open, and a negative review is POSTed to
``/hooks/reviews`` every 2 s: the live latency is the time from the POST to the ``cases`` event.

Prints p50 / p95 / p99 per route (goal: p95 < 200 ms) and the live latency (target: < 2 s).

Run: ``.venv/bin/python bench/console.py [--small] [--seconds 60] [--think 1.0] [--keep]``
(``--small``: 50k touchpoints, 5k answers, 1k cases; a couple of minutes.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
WEBHOOK_SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMTIzNDU2Nzg5MA=="
PASSWORD = "bench console password 1"
REGIONS, DISTRICTS_PER_REGION, STORES_PER_DISTRICT = 4, 5, 10
TEXTS = ["牛奶过期了还在卖", "排队太久", "店员态度很差", "面包发霉", "外卖送错了", "冷柜不冷", "价格贵", "很满意"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] if s else float("nan")


def org() -> tuple[dict[str, Any], list[str]]:
    regions = {f"r{i}": {"name": f"大区{i}"} for i in range(1, REGIONS + 1)}
    districts, stores = {}, {}
    n = 0
    for r in regions:
        for _ in range(DISTRICTS_PER_REGION):
            d = f"d{len(districts) + 1:02d}"
            districts[d] = {"name": f"片区{d}", "parent": r}
            for _ in range(STORES_PER_DISTRICT):
                n += 1
                stores[f"S{n:04d}"] = {"name": f"门店{n}", "parent": d, "contacts": ["grp"]}
    return {"hq": {"name": "总部"}, "regions": regions, "districts": districts, "stores": stores}, list(stores)


def write_config(folder: Path, url: str, port: int) -> Path:
    import yaml

    tree, _ = org()
    cfg = {
        "secret_key": "bench-secret-key",
        "store": {"url": url, "pool_size": 20},
        "server": {"public_url": f"http://127.0.0.1:{port}"},
        "sources": {
            "reviews": {
                "connector": "webhook",
                "mapping": "generic_review",
                "options": {"secret": WEBHOOK_SECRET, "id_path": "review_id"},
            }
        },
        "destinations": {
            "robot": {
                "connector": "dingtalk_robot",
                "options": {"access_token": "tok", "secret": "SECbench", "base_url": "http://127.0.0.1:9"},
            }
        },
        "feedback": {
            "contacts": {"grp": {"name": "门店群", "kind": "group", "endpoints": [{"destination": "robot"}]}},
            "org": tree,
        },
    }
    path = folder / "cxhub.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def review(n: int, store: str, text: str, rating: int, at: datetime, member: str) -> dict[str, Any]:
    return {
        "review_id": f"rv-{n}",
        "created_at": at.isoformat(timespec="seconds"),
        "platform": "meituan",
        "store_code": store,
        "order_id": f"O-{n}",
        "rating": rating,
        "content": text,
        "member_no": member,
    }


def seed(cfg_path: Path, *, touchpoints_n: int, answers_n: int, cases_n: int, customers_n: int) -> None:
    """Templates from the real ingest (one review, its case), then COPY of the bulk."""
    from kit.runtime import build_runtime
    from sqlalchemy import text

    from hub.mapping import compile_mapping, resolve_mapping_ref
    from hub.sdk.connector import RawRecord
    from hub.yamlio import load_yaml

    rt = build_runtime(cfg_path)
    now = datetime.now(UTC)
    data, lines = load_yaml(resolve_mapping_ref("generic_review", ROOT))
    mapping = compile_mapping(data, lines)
    rec = review(0, "S0001", "牛奶过期了还在卖，店员态度很差", 1, now - timedelta(days=1), "M-template")
    rt.ingestor.ingest("reviews", mapping, [RawRecord("reviews", "rv-0", rec)])
    with rt.store.connect() as conn:
        tp_doc = json.loads(conn.execute(text("SELECT doc::text FROM touchpoints LIMIT 1")).scalar_one())
        case_doc = json.loads(conn.execute(text("SELECT doc::text FROM cases LIMIT 1")).scalar_one())
    rt.close()
    _, stores = org()
    rng = random.Random(7)
    t0 = time.perf_counter()
    import psycopg

    url = str(rt.config.raw.store.url).replace("postgresql+psycopg://", "postgresql://")
    customer_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(customers_n)]
    home = {c: stores[i % len(stores)] for i, c in enumerate(customer_ids)}
    reviews_n = max(cases_n * 2, touchpoints_n // 5)
    purchases_n = touchpoints_n - reviews_n - answers_n
    negative: list[tuple[str, str, str, datetime, str]] = []  # touchpoint id, customer, store, at, text
    purchase_ids: list[tuple[str, str, str, datetime]] = []
    with psycopg.connect(url) as pg:
        with pg.cursor() as cur:
            with cur.copy("COPY customers (id, created_at, opted_out) FROM STDIN") as cp:
                for c in customer_ids:
                    cp.write_row((c, now - timedelta(days=200), False))
            with cur.copy("COPY identities (namespace, scope, value, customer_id, first_seen) FROM STDIN") as cp:
                for i, c in enumerate(customer_ids):
                    cp.write_row(("member_id", "", f"M{i:07d}", c, now - timedelta(days=200)))
            cols = "id, source, external_id, kind, channel, occurred_at, received_at, customer_id, store, doc"
            with cur.copy(f"COPY touchpoints ({cols}) FROM STDIN") as cp:
                for i in range(touchpoints_n):
                    c = customer_ids[rng.randrange(customers_n)]
                    store = home[c] if rng.random() < 0.8 else stores[rng.randrange(len(stores))]
                    at = now - timedelta(minutes=rng.randrange(90 * 24 * 60))
                    tid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                    doc = dict(tp_doc)
                    doc.update(id=tid, occurred_at=at.isoformat(), received_at=at.isoformat())
                    doc["customer"] = {**tp_doc["customer"], "customer_id": c}
                    doc["org"] = {**tp_doc["org"], "store": store, "store_name": None}
                    if i < reviews_n:
                        kind, source, channel = "review", "reviews", "meituan"
                        rating = 1 if i < cases_n else rng.choice([1, 2, 3, 4, 5, 5, 5])
                        words = TEXTS[rng.randrange(len(TEXTS))] + f" #{i}"
                        doc["feedback"] = {**tp_doc["feedback"], "rating": rating, "text": words}
                        if i < cases_n:
                            negative.append((tid, c, store, at, words))
                    elif i < reviews_n + purchases_n:
                        kind, source, channel = "purchase", "pos", "pos"
                        doc["feedback"] = None
                        doc["order"] = {"id": f"P-{i}", "amount": rng.randrange(5, 500)}
                        purchase_ids.append((tid, c, store, at))
                    else:
                        kind, source, channel = "survey_response", "surveys", "sms"
                        nps, csat = rng.randrange(11), rng.randrange(1, 6)
                        doc["feedback"] = {**tp_doc["feedback"], "rating": None, "nps": nps, "csat": csat, "text": None}
                        doc["attributes"] = {"answers": [{"id": "nps", "value": nps}, {"id": "overall", "value": csat}]}
                    doc.update(kind=kind, source=source, channel=channel, external_id=f"x-{i}")
                    cp.write_row(
                        (tid, source, f"x-{i}", kind, channel, at, at, c, store, json.dumps(doc, ensure_ascii=False))
                    )
            print(f"seed: {touchpoints_n:,} touchpoints, {customers_n:,} customers in {time.perf_counter() - t0:.0f} s")
            # survey answers: the last answers_n touchpoints; their invitations point at purchases
            cur.execute(
                "SELECT id, customer_id, store, occurred_at FROM touchpoints WHERE kind = 'survey_response' "
                "AND source = 'surveys'"
            )
            answers = cur.fetchall()
            icols = (
                "id, rule, questionnaire, transaction_id, order_id, customer_id, store, channel, destination, "
                "decision, status, occurred_at, created_at, send_at, expires_at, responded_at, response_id, doc, "
                "nps, csat, scores"
            )
            with cur.copy(f"COPY survey_invitations ({icols}) FROM STDIN") as cp:
                for k, (rid, c, store, at) in enumerate(answers):
                    tx = purchase_ids[k % len(purchase_ids)] if k < len(purchase_ids) else None
                    nps, csat = rng.randrange(11), rng.randrange(1, 6)
                    cp.write_row(
                        (
                            str(uuid.uuid4()),
                            "after_purchase",
                            "default",
                            tx[0] if tx else str(uuid.uuid4()),
                            f"P-{k}",
                            c,
                            store,
                            "sms",
                            "sms",
                            "send",
                            "responded",
                            at - timedelta(hours=2),
                            at - timedelta(hours=2),
                            at - timedelta(hours=1),
                            at + timedelta(days=7),
                            at,
                            rid,
                            json.dumps({"recipient": None, "categories": []}),
                            nps,
                            csat,
                            json.dumps({"nps": nps, "overall": csat}),
                        )
                    )
            ccols = (
                "id, status, severity, touchpoint_id, source, customer_id, store, opened_at, updated_at, ack_due_at, "
                "resolve_due_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, level, warned, "
                "reminders, resolve_stage, round, touchpoints, doc"
            )
            cur.execute("DELETE FROM case_events")
            cur.execute("DELETE FROM case_touchpoints")
            cur.execute("DELETE FROM cases")
            with cur.copy(f"COPY cases ({ccols}) FROM STDIN") as cp:
                for n, (tid, c, store, at, words) in enumerate(negative, start=1):
                    recent = rng.random() < 0.3
                    opened = now - timedelta(minutes=rng.randrange(600)) if recent else at
                    status = rng.choice(["new", "acknowledged"]) if recent else rng.choice(["resolved", "closed"])
                    acked = opened + timedelta(minutes=5) if status != "new" else None
                    doc = json.loads(json.dumps(case_doc))
                    doc["summary"] = {**case_doc["summary"], "touchpoint_id": tid, "text": words}
                    cp.write_row(
                        (
                            n,
                            status,
                            rng.choice(["low", "medium", "high"]),
                            tid,
                            "reviews",
                            c,
                            store,
                            opened,
                            opened,
                            opened + timedelta(minutes=10),
                            opened + timedelta(hours=24),
                            acked,
                            "bench" if acked else None,
                            opened + timedelta(hours=3) if status in ("resolved", "closed") else None,
                            "bench" if status in ("resolved", "closed") else None,
                            0,
                            False,
                            0,
                            0,
                            0,
                            1,
                            json.dumps(doc, ensure_ascii=False),
                        )
                    )
            with cur.copy("COPY case_touchpoints (touchpoint_id, case_id, added_at) FROM STDIN") as cp:
                for n, (tid, _, _, at, _) in enumerate(negative, start=1):
                    cp.write_row((tid, n, at))
            with cur.copy("COPY case_events (case_id, at, action, actor, via, detail) FROM STDIN") as cp:
                for n, (_, _, _, at, _) in enumerate(negative, start=1):
                    cp.write_row((n, at, "opened", "system", "system", "{}"))
            cur.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))")
        pg.commit()
    with psycopg.connect(url, autocommit=True) as pg:
        for table in ("touchpoints", "customers", "identities", "survey_invitations", "cases", "case_touchpoints"):
            pg.execute(f"VACUUM ANALYZE {table}")
    print(f"seed: {answers_n:,} answers, {cases_n:,} cases, all in {time.perf_counter() - t0:.0f} s")


USERS = [
    ("admin", None, 2),
    ("hq_analyst", None, 3),
    ("integrator", None, 2),
    ("region_manager", "r1", 1),
    ("region_manager", "r2", 1),
    ("district_manager", "d01", 1),
    ("district_manager", "d07", 1),
    ("district_manager", "d13", 1),
    ("store_manager", "S0001", 1),
    ("store_manager", "S0042", 1),
    ("store_manager", "S0105", 1),
    ("store_manager", "S0150", 1),
    ("store_manager", "S0199", 1),
    ("agent", "S0002", 1),
    ("agent", "S0077", 1),
    ("agent", "S0123", 1),
]


def make_users(cfg_path: Path) -> list[tuple[str, str, str | None]]:
    from kit.runtime import build_runtime

    from hub.console.accounts import Accounts
    from hub.console.app import org_tree

    rt = build_runtime(cfg_path, migrate=False)
    tree = org_tree(rt)
    accounts = Accounts(rt.store)
    out = []
    for role, unit, count in USERS:
        for i in range(count):
            login = f"{role}-{unit or 'hq'}-{i}"
            if accounts.find_user(login) is None:
                accounts.add_user(
                    login,
                    role=role,
                    unit=unit,
                    tree=tree,
                    password=PASSWORD,
                    display_name=login,
                    must_change_password=False,
                )
            out.append((login, role, unit))
    rt.close()
    return out


def routes_and_objects(cfg_path: Path) -> tuple[list[Any], Any, dict[str, list[Any]]]:
    """The console's GET routes (from the app), its org tree, and objects to fill paths with."""
    from kit.console import console_routes
    from kit.runtime import build_runtime
    from sqlalchemy import text

    from hub.console.app import org_tree
    from hub.web import create_app

    rt = build_runtime(cfg_path, migrate=False)
    routes = [
        r
        for r in console_routes(create_app(rt))
        if r.method == "GET" and r.path not in ("/console/events", "/console/login")
    ]
    objects: dict[str, list[Any]] = {"tiles": [t.name for t in rt.console.tiles]}
    with rt.store.connect() as conn:
        objects["cases"] = [
            tuple(r) for r in conn.execute(text("SELECT id, store FROM cases ORDER BY random() LIMIT 3000"))
        ]
        objects["customers"] = [
            tuple(r)
            for r in conn.execute(
                text("SELECT customer_id, store FROM touchpoints WHERE kind = 'review' ORDER BY random() LIMIT 3000")
            )
        ]
        objects["quarantine"] = [r[0] for r in conn.execute(text("SELECT id FROM quarantine LIMIT 50"))]
    tree = org_tree(rt)
    rt.close()
    return routes, tree, objects


def fill(route: Any, principal: Any, objects: dict[str, list[Any]], rng: random.Random) -> list[str]:
    """Concrete URLs for a route and a user (objects in the user's scope), [] when none fits."""
    path = route.path
    if not route.params:
        return [path]
    if "/tiles/" in path:
        return [path.replace("{name}", t) for t in objects["tiles"]]
    out = path
    for name in route.params:
        before = path.split("{" + name)[0].rstrip("/").rsplit("/", 1)[-1]
        if before in ("cases",) or name == "case_id":
            pool = [c for c, s in objects["cases"] if principal.sees_store(s)]
        elif before in ("customers",) or name == "customer_id":
            pool = [c for c, s in objects["customers"] if principal.sees_store(s)]
        elif before in ("connectors", "sources"):
            pool = ["reviews"]
        elif before == "destinations":
            pool = ["robot"]
        elif before == "quarantine":
            pool = objects["quarantine"]
        else:
            return []
        if not pool:
            return []
        out = re.sub(r"{" + re.escape(name) + r"(?::[^}]+)?}", str(rng.choice(pool)), out, count=1)
    return [out]


async def sign_in(base: str, login: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False)
    page = await client.get("/console/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    r = await client.post(
        "/console/login", data={"login": login, "password": PASSWORD, "login_csrf": token.group(1), "next": "/console/"}
    )
    assert r.status_code == 303, (login, r.status_code, r.text[:300])
    return client


async def user_loop(
    base: str,
    login: str,
    principal: Any,
    routes: list[Any],
    objects: dict[str, list[Any]],
    until: float,
    samples: dict[str, list[float]],
    errors: dict[str, list[str]],
    think: float,
) -> None:
    rng = random.Random(login)
    client = await sign_in(base, login)
    mine = [r for r in routes if r.permission is None or principal.can(r.permission)]
    rng.shuffle(mine)
    i = 0
    try:
        while time.monotonic() < until and mine:
            route = mine[i % len(mine)]
            i += 1
            for url in fill(route, principal, objects, rng)[:3]:
                t = time.perf_counter()
                r = await client.get(url)
                await r.aread()
                ms = (time.perf_counter() - t) * 1000
                samples[route.path].append(ms)
                if r.status_code >= 300:
                    errors[route.path].append(f"{r.status_code} {login} {url}")
                if think > 0:
                    await asyncio.sleep(think * rng.uniform(0.5, 1.5))
    finally:
        await client.aclose()


async def live_loop(base: str, login: str, store: str, until: float, out: list[float]) -> None:
    """A store manager's open page: POST a negative review, time the ``cases`` event."""
    from standardwebhooks.webhooks import Webhook

    hook = Webhook(WEBHOOK_SECRET)
    client = await sign_in(base, login)
    n = 0
    run = int(time.time())  # review ids new in every run, also on a database kept from an earlier one
    async with client.stream("GET", "/console/events", timeout=None) as stream:
        if stream.status_code != 200:
            await stream.aread()
            raise SystemExit(f"/console/events: {stream.status_code} {stream.headers.get('location')} {client.cookies}")
        events: asyncio.Queue[str] = asyncio.Queue()

        async def read() -> None:  # on its own task: a wait that times out must not end the stream
            async for line in stream.aiter_lines():
                if line.startswith("data:") and '"topic":"cases"' in line.replace(" ", "") and store in line:
                    await events.put(line)

        reader = asyncio.create_task(read())
        await asyncio.sleep(1.0)
        while time.monotonic() < until:
            n += 1
            at = datetime.now(UTC)
            body = json.dumps(review(run * 1000 + n, store, f"冷柜坏了，酸奶是温的 live{n}", 1, at, f"LIVE{n}"))
            msg_id = f"live-{uuid.uuid4()}"
            sig = hook.sign(msg_id, at, body)
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": sig,
                "content-type": "application/json",
            }
            while not events.empty():  # events of earlier posts that came after their wait
                events.get_nowait()
            t = time.perf_counter()
            async with httpx.AsyncClient(base_url=base, timeout=30) as poster:
                r = await poster.post("/hooks/reviews", content=body, headers=headers)
                assert r.status_code < 300, (r.status_code, r.text)
            try:
                await asyncio.wait_for(events.get(), timeout=10)
                out.append((time.perf_counter() - t) * 1000)
            except TimeoutError:
                if reader.done():
                    raise SystemExit(f"/console/events ended: {reader.exception()!r}") from None
                out.append(float("inf"))
            await asyncio.sleep(2.0)
        reader.cancel()
    await client.aclose()


async def solo(
    base: str, users: list[tuple[str, str, str | None]], routes: list[Any], tree: Any, objects: dict[str, list[Any]]
) -> dict[str, list[float]]:
    """One user at a time, each route 5 times: the route's own cost, without queueing behind others."""
    from hub.console.scope import Principal

    out: dict[str, list[float]] = defaultdict(list)
    picks = [u for u in users if u[1] in ("admin", "store_manager")][::2][:2]
    for login, role, unit in picks:
        p = Principal.of(tree, user_id=0, login=login, display_name=login, role=role, unit=unit)
        client = await sign_in(base, login)
        rng = random.Random(1)
        for route in routes:
            if route.permission is not None and not p.can(route.permission):
                continue
            for _ in range(5):
                for url in fill(route, p, objects, rng)[:1]:
                    t = time.perf_counter()
                    r = await client.get(url)
                    await r.aread()
                    out[route.path].append((time.perf_counter() - t) * 1000)
        await client.aclose()
    return out


async def load(
    base: str, cfg_path: Path, seconds: float, think: float, exclude: str | None
) -> tuple[dict[str, list[float]], dict[str, list[str]], list[float], dict[str, list[float]]]:
    from hub.console.scope import Principal

    users = make_users(cfg_path)
    routes, tree, objects = routes_and_objects(cfg_path)
    if exclude:
        routes = [r for r in routes if not re.search(exclude, r.path)]
    alone = await solo(base, users, routes, tree, objects)
    samples: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    live: list[float] = []
    until = time.monotonic() + seconds
    tasks = []
    for login, role, unit in users:
        p = Principal.of(tree, user_id=0, login=login, display_name=login, role=role, unit=unit)
        tasks.append(user_loop(base, login, p, routes, objects, until, samples, errors, think))
    live_login = next(login for login, role, unit in users if role == "store_manager" and unit == "S0001")
    tasks.append(live_loop(base, live_login, "S0001", until, live))
    print(
        f"load: {len(users)} users (think time {think:g} s) + 1 live page for {seconds:.0f} s "
        f"over {len(routes)} GET routes"
    )
    await asyncio.gather(*tasks)
    return samples, errors, live, alone


def explain(url: str, sql: str) -> str:
    import psycopg

    with psycopg.connect(url) as pg:
        return "\n".join(r[0] for r in pg.execute("EXPLAIN ANALYZE " + sql).fetchall())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="50k touchpoints, 5k answers, 1k cases")
    ap.add_argument("--seconds", type=float, default=None, help="load duration (default 60, 30 with --small)")
    ap.add_argument("--reuse", action="store_true", help="reuse the database an earlier --keep run left")
    ap.add_argument("--exclude", default=None, help="leave out the routes whose path matches this regex")
    ap.add_argument("--think", type=float, default=1.0, help="mean seconds a user waits between requests (0: none)")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards (cxhub_bench_console)")
    args = ap.parse_args()
    size = (50_000, 5_000, 1_000, 10_000) if args.small else (1_000_000, 100_000, 10_000, 100_000)
    seconds = args.seconds or (30 if args.small else 60)
    import psycopg

    db = "cxhub_bench_console"
    with psycopg.connect(ADMIN_URL, autocommit=True) as pg:
        reuse = args.reuse and pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        if not reuse:
            pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            pg.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    folder = Path(tempfile.mkdtemp(prefix="cxhub-bench-console-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg_path = write_config(folder, url, port)
    proc = None
    try:
        from hub.store import Store

        store = Store(url)
        store.migrate()
        store.dispose()
        if reuse:
            print(f"data: reusing the database {db} of an earlier --keep run")
        else:
            seed(cfg_path, touchpoints_n=size[0], answers_n=size[1], cases_n=size[2], customers_n=size[3])
        log = open(folder / "cxhub.log", "wb")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/cxhub"),
                "run",
                "--config",
                str(cfg_path),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            cwd=str(folder),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cxhub run did not start; see {folder / 'cxhub.log'}")
            time.sleep(0.5)
        load_avg = Path("/proc/loadavg").read_text().split()[:3]
        samples, errors, live, alone = asyncio.run(load(base, cfg_path, seconds, args.think, args.exclude))
        print(f"\nmachine: {os.cpu_count()} cores, load average before the run {' '.join(load_avg)}")
        print(f"data: {size[0]:,} touchpoints, {size[1]:,} survey answers, {size[2]:,} cases, 200 stores")
        every = [x for v in samples.values() for x in v]
        print(
            f"all routes: {len(every):,} requests, {len(every) / seconds:.0f}/s, p50 {pct(every, 50):.0f} ms, "
            f"p95 {pct(every, 95):.0f} ms, p99 {pct(every, 99):.0f} ms; "
            f"routes over 200 ms at p95: {sum(1 for v in samples.values() if pct(v, 95) > 200)}\n"
        )
        print("| route | alone p50 ms | n (20 users) | p50 ms | p95 ms | p99 ms | 3xx/4xx/5xx |")
        print("|---|---|---|---|---|---|---|")
        for path in sorted(set(samples) | set(alone)):
            v = samples[path]
            mark = " ⚠" if pct(v, 95) > 200 else ""
            print(
                f"| {path}{mark} | {pct(alone[path], 50):.0f} | {len(v)} | {pct(v, 50):.0f} | {pct(v, 95):.0f} "
                f"| {pct(v, 99):.0f} | {len(errors[path])} |"
            )
        finite = [x for x in live if x != float("inf")]
        print(
            f"\nlive: webhook POST -> SSE `cases` event, n={len(live)} (lost {len(live) - len(finite)}): "
            f"p50 {pct(finite, 50):.0f} ms, p95 {pct(finite, 95):.0f} ms, max {max(finite, default=float('nan')):.0f} ms"
        )
        for path, errs in sorted(errors.items()):
            if errs:
                print(f"errors {path}: {errs[:3]}")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not (args.keep or args.reuse):
            with psycopg.connect(ADMIN_URL, autocommit=True) as pg:
                pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
