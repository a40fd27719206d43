"""The authorisation matrix: every route of the console, walked as users who must not see store S001.

The routes are read from the app (not listed by hand), so a page added tomorrow is walked too, and
a route whose path parameter this file cannot fill with a real object fails the test by name. For
each route and each role (a store manager and an agent of S002, an integrator, an HQ analyst):

- a role without the permission the route's guard demands gets 403;
- a request for S001's objects (its cases, customers, touchpoints, quarantined records, outbox
  messages, its manager's account; ``?store=S001`` and the like in every known filter) gets a 4xx,
  or an answer that holds none of S001's texts, ids, store name or phone number;
- an unsafe request leaves S001's rows as they were;
- nothing answers 5xx.

Signed out, every guarded route sends a page to the sign-in form (303) and an API route answers 401.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit.console import (
    PUBLIC_PREFIXES,
    ConsoleKit,
    StoreData,
    World,
    answering,
    console_routes,
    leaks,
    seed_world,
    text_of,
    urls,
)
from sqlalchemy import func, select

from hub.console.accounts import Accounts
from hub.console.scope import Principal

#: routes about the signed-in user's own session, walked by test_shell.py instead
SELF_ROUTES = {
    ("POST", "/console/logout"),
    ("POST", "/console/logout-all"),
    ("POST", "/console/password"),
    ("POST", "/console/login"),
}
#: the event stream never ends; its scope is checked on the feed below
STREAMS = {("GET", "/console/events")}

#: the form of an unsafe request: what a page's form or an htmx button would send
FORM = {
    "note": "看一下",
    "reason": "测试",
    "status": "resolved",
    "assignee": "someone",
    "confirm": "yes",
    "recovered": "true",
    "enabled": "false",
    "role": "admin",
    "unit": "",
    "display_name": "x",
    "password": "another long password 1",
}

ROLES = [("store_manager", "S002"), ("agent", "S002"), ("integrator", None), ("hq_analyst", None)]


@pytest.fixture
def world(console: ConsoleKit) -> World:
    return seed_world(console)


def _snapshot(kit: ConsoleKit, s: StoreData) -> dict[str, Any]:
    """S001's rows that no other store's user may change."""
    from hub.console.schema import console_tokens, console_users
    from hub.features.feedback.schema import case_events, cases
    from hub.store.schema import customers, identities, outbox, quarantine, touchpoints

    with kit.rt.store.connect() as conn:
        return {
            "cases": [
                tuple(r)
                for r in conn.execute(
                    select(cases.c.id, cases.c.status, cases.c.acknowledged_by, cases.c.resolved_by, cases.c.doc)
                    .where(cases.c.store == "S001")
                    .order_by(cases.c.id)
                )
            ],
            "events": conn.execute(select(func.count()).where(case_events.c.case_id.in_(s.case_ids))).scalar_one(),
            "touchpoints": conn.execute(select(func.count()).where(touchpoints.c.store == "S001")).scalar_one(),
            "customers": [
                tuple(r)
                for r in conn.execute(
                    select(customers).where(customers.c.id.in_(s.customer_ids)).order_by(customers.c.id)
                )
            ],
            "identities": conn.execute(
                select(func.count()).where(identities.c.customer_id.in_(s.customer_ids))
            ).scalar_one(),
            "quarantine": [
                tuple(r)
                for r in conn.execute(
                    select(quarantine.c.id, quarantine.c.status).where(quarantine.c.id.in_(s.quarantine_ids))
                )
            ],
            "outbox": [
                tuple(r)
                for r in conn.execute(select(outbox.c.id, outbox.c.status).where(outbox.c.id.in_(s.outbox_ids)))
            ],
            "users": [
                tuple(r)
                for r in conn.execute(
                    select(
                        console_users.c.login, console_users.c.role, console_users.c.unit, console_users.c.disabled
                    ).order_by(console_users.c.id)
                )
            ],
            "tokens": conn.execute(select(func.count()).select_from(console_tokens)).scalar_one(),
        }


def _principal(kit: ConsoleKit, role: str, unit: str | None) -> Principal:
    return Principal.of(
        kit.tree,
        user_id=0,
        login="x",
        display_name="x",
        role=role,
        unit=unit,
        reveal_roles=kit.rt.config.raw.console.reveal_roles,
    )


def test_every_console_route_has_a_guard(world: World) -> None:
    assert len(world.routes) >= 5, world.routes
    open_routes = [str(r) for r in world.routes if not r.guarded and not r.path.startswith(PUBLIC_PREFIXES)]
    assert not open_routes, f"routes under /console without the console's guard: {open_routes}"


@pytest.mark.parametrize(("role", "unit"), ROLES, ids=[r for r, _ in ROLES])
def test_other_roles_and_stores_never_reach_s001(world: World, role: str, unit: str | None) -> None:
    kit = world.kit
    client = answering(kit.user(role, unit))
    csrf = client.csrf  # type: ignore[attr-defined]
    me = _principal(kit, role, unit)
    before = _snapshot(kit, world.theirs)
    problems: list[str] = []
    walked = 0
    for route in world.routes:
        if (route.method, route.path) in SELF_ROUTES | STREAMS:
            continue
        allowed = route.permission is None or me.can(route.permission)
        # an integrator reads the plumbing (payloads of the quarantine and the outbox), never the
        # business pages; everyone else below HQ must not see S001 anywhere
        business = not me.sees_store("S001") and not (
            role == "integrator" and (route.permission or "").startswith("ops.")
        )
        for url in urls(world, route):
            walked += 1
            if route.method == "GET":
                r = client.get(url)
            else:
                r = client.request(route.method, url, data={**FORM, "csrf": csrf}, headers={"X-CSRF-Token": csrf})
            where = f"{route.method} {url} as {role}/{unit}"
            if r.status_code >= 500:
                problems.append(f"{where}: {r.status_code} {r.text[:200]}")
                continue
            if route.guarded and not allowed and r.status_code != 403:
                problems.append(f"{where}: {r.status_code}, expected 403 (needs {route.permission})")
                continue
            body = text_of(r) + "\n" + r.headers.get("location", "")
            found = leaks(body, url, world.theirs, business=business)
            if found:
                problems.append(f"{where}: {r.status_code} shows S001's {found}")
    assert not world.unfilled, f"routes this test cannot fill (teach _values their parameters): {world.unfilled}"
    assert walked, "no route walked"
    assert not problems, "\n".join(problems)
    after = _snapshot(kit, world.theirs)
    assert after == before, "an unsafe request of another role or store changed S001's rows"


def test_signed_out_requests_go_to_the_sign_in_form(world: World) -> None:
    client = answering(world.kit.client())
    problems = []
    for route in world.routes:
        if (route.method, route.path) in SELF_ROUTES:
            continue
        for url in urls(world, route):
            r = client.request(route.method, url, data=dict(FORM))
            where = f"{route.method} {url}"
            if r.status_code >= 500:
                problems.append(f"{where}: {r.status_code}")
            elif not route.guarded:  # the sign-in form and the platforms' callbacks
                if leaks(text_of(r), url, world.theirs, business=True):
                    problems.append(f"{where}: shows S001's data signed out")
            elif route.api:
                if r.status_code != 401:
                    problems.append(f"{where}: {r.status_code}, expected 401")
            elif not (r.status_code == 303 and r.headers["location"].startswith("/console/login")):
                problems.append(f"{where}: {r.status_code} {r.headers.get('location')}, expected 303 to the sign-in")
    assert not world.unfilled, f"routes this test cannot fill: {world.unfilled}"
    assert not problems, "\n".join(problems)


def test_an_api_token_of_another_store_reaches_no_s001_object(world: World) -> None:
    """Scripts use ``Authorization: Bearer`` (no CSRF): the same scope applies."""
    kit = world.kit
    accounts = Accounts(kit.rt.store)
    login = kit.add_user("store_manager", "S002")
    user = accounts.find_user(login)
    assert user is not None
    _, token = accounts.create_token(user.id, "script", actor="test")
    client = answering(kit.client())
    client.headers["Authorization"] = f"Bearer {token}"
    problems = []
    for route in world.routes:
        if route.method != "GET" or (route.method, route.path) in STREAMS or not route.guarded:
            continue
        for url in urls(world, route):
            r = client.get(url)
            if r.status_code >= 500:
                problems.append(f"{url}: {r.status_code}")
            elif found := leaks(text_of(r), url, world.theirs, business=True):
                problems.append(f"{url}: {r.status_code} shows S001's {found}")
    assert not problems, "\n".join(problems)


def test_the_live_feed_reaches_only_the_stores_in_scope(world: World) -> None:
    """``GET /console/events``: a change at S001 reaches its manager and HQ, not S002's staff; a
    change of no store reaches HQ and the integrator, no store's staff."""
    from hub.console.live import FeedReader, publish

    kit = world.kit

    async def run() -> dict[str, list[str]]:
        reader = FeedReader(kit.rt.store, poll_seconds=0.02)
        who = {
            "s002": _principal(kit, "store_manager", "S002"),
            "agent": _principal(kit, "agent", "S002"),
            "s001": _principal(kit, "store_manager", "S001"),
            "hq": _principal(kit, "hq_analyst", None),
            "integrator": _principal(kit, "integrator", None),
        }
        got: dict[str, list[str]] = {k: [] for k in who}
        streams = {k: reader.subscribe(p, heartbeat=0.05) for k, p in who.items()}
        for s in streams.values():
            assert (await anext(s)).startswith(b"retry:")

        async def read(k: str) -> None:
            async for chunk in streams[k]:
                if chunk.startswith(b"id:"):
                    got[k].append(chunk.decode())

        tasks = [asyncio.create_task(read(k)) for k in who]
        await asyncio.sleep(0.1)
        with kit.rt.store.begin() as conn:
            publish(conn, kit.rt.store.clock(), "cases", store="S001", ref=f"case:{world.theirs.case_ids[0]}")
            publish(conn, kit.rt.store.clock(), "cases", store="S002", ref=f"case:{world.mine.case_ids[0]}")
            publish(conn, kit.rt.store.clock(), "quarantine", ref="source:pos", replayed=3)
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await reader.close()
        return got

    got = asyncio.run(run())
    assert all("S001" not in e for e in got["s002"] + got["agent"]), got
    assert len(got["s002"]) == 1 and len(got["agent"]) == 1, got
    assert len(got["s001"]) == 1 and "S001" in got["s001"][0], got
    # an event of no store (the quarantine of a source) goes to HQ and to the integrator who runs it
    assert len(got["hq"]) == 3, got
    assert len(got["integrator"]) == 1 and "quarantine" in got["integrator"][0], got


def test_the_walk_finds_a_route_that_ignores_the_scope(world: World) -> None:
    """The walk can fail: a page that reads cases without the principal's clause is caught."""
    from fastapi import APIRouter, Depends
    from fastapi.responses import HTMLResponse
    from kit.console import ConsoleKit as Kit

    from hub.features.feedback.schema import cases

    def leaky(app: Any) -> APIRouter:
        router = APIRouter(prefix="/console", include_in_schema=False)

        @router.get("/leaky/{case_id}", response_class=HTMLResponse)
        def page(case_id: int, me: Principal = Depends(app.guard("data.read"))) -> str:
            with app.rt.store.connect() as conn:
                doc = conn.execute(select(cases.c.doc).where(cases.c.id == case_id)).scalar_one()
            return f"<p>{doc['summary']['text']}</p><a href='/console/cases/{case_id}'>x</a>"

        return router

    world.kit.rt.console.add_router(leaky)
    try:
        kit = Kit(world.kit.rt)
        routes = console_routes(kit.app)
        [route] = [r for r in routes if r.path == "/console/leaky/{case_id}"]
        assert route.permission == "data.read" and route.guarded
        client = answering(kit.user("store_manager", "S002"))
        [url] = urls(world, route)
        r = client.get(url)
        assert r.status_code == 200
        assert leaks(r.text, url, world.theirs, business=True)
    finally:
        world.kit.rt.console.routers.remove(leaky)
