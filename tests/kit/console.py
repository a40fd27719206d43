"""The console under test: a hub with a small org (two regions, three districts, four stores), its
web app through Starlette's TestClient, and users of every role.

``console`` fixture -> :class:`ConsoleKit`: ``kit.user("store_manager", "S001")`` adds a user and
returns a signed-in client (``client.csrf`` holds its session's CSRF token); ``kit.ingest_review``
and ``kit.ingest_checkout`` bring touchpoints in through the real ingest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.console.app import org_tree
from hub.mapping import compile_mapping, resolve_mapping_ref
from hub.runtime import Runtime
from hub.sdk.connector import RawRecord
from hub.store import Store
from hub.web import create_app
from hub.yamlio import load_yaml
from kit.runtime import build_runtime

PASSWORD = "correct horse battery"

ORG: dict[str, Any] = {
    "hq": {"name": "总部"},
    "regions": {"east": {"name": "华东大区"}, "south": {"name": "华南大区"}},
    "districts": {
        "sh": {"name": "上海片区", "parent": "east"},
        "hz": {"name": "杭州片区", "parent": "east"},
        "gz": {"name": "广州片区", "parent": "south"},
    },
    "stores": {
        "S001": {"name": "徐汇店", "parent": "sh", "contacts": ["s_group"]},
        "S002": {"name": "静安店", "parent": "sh", "contacts": ["s_group"]},
        "S003": {"name": "西湖店", "parent": "hz", "contacts": ["s_group"]},
        "S101": {"name": "天河店", "parent": "gz", "contacts": ["s_group"]},
    },
}

#: which stores each unit sees, for the scope tests
SUBTREE = {
    "east": {"S001", "S002", "S003"},
    "south": {"S101"},
    "sh": {"S001", "S002"},
    "hz": {"S003"},
    "gz": {"S101"},
    "S001": {"S001"},
    "S002": {"S002"},
    "S003": {"S003"},
    "S101": {"S101"},
}


def console_config(db: str, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "secret_key": "test-secret-key",
        "store": {"url": db},
        "server": {"public_url": "http://testserver"},
        "sources": {
            "reviews": {
                "connector": "webhook",
                "mapping": "generic_review",
                "options": {"secret": "whsec_ZGVtby13ZWJob29rLXNlY3JldC0xMjM0NTY3ODkw", "id_path": "review_id"},
            },
        },
        "destinations": {
            "robot": {
                "connector": "dingtalk_robot",
                "options": {"access_token": "tok", "secret": "SECtest", "base_url": "http://127.0.0.1:9"},
            }
        },
        "feedback": {
            "contacts": {"s_group": {"name": "门店群", "kind": "group", "endpoints": [{"destination": "robot"}]}},
            "org": ORG,
        },
    }
    for key, value in (extra or {}).items():
        cfg[key] = value
    return cfg


class ConsoleKit:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.app = create_app(rt)
        self.tree = org_tree(rt)
        self._n = 0

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver", follow_redirects=False)

    def add_user(
        self, role: str, unit: str | None = None, *, login: str | None = None, must_change: bool = False
    ) -> str:
        from hub.console.accounts import Accounts

        self._n += 1
        login = login or f"{role}-{unit or 'hq'}-{self._n}"
        Accounts(self.rt.store).add_user(
            login,
            role=role,
            unit=unit,
            tree=self.tree,
            password=PASSWORD,
            must_change_password=must_change,
            display_name=f"{role} {unit or ''}".strip(),
        )
        return login

    def login(self, login: str, password: str = PASSWORD) -> TestClient:
        client = self.client()
        page = client.get("/console/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token, page.text
        r = client.post(
            "/console/login",
            data={"login": login, "password": password, "login_csrf": token.group(1), "next": "/console/"},
        )
        assert r.status_code == 303, r.text
        home = client.get(r.headers["location"], follow_redirects=True)
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
        client.csrf = csrf.group(1) if csrf else ""  # type: ignore[attr-defined]
        return client

    def user(self, role: str, unit: str | None = None, **kwargs: Any) -> TestClient:
        return self.login(self.add_user(role, unit, **kwargs))

    def ingest(self, source: str, mapping: str, *records: dict[str, Any], id_key: str = "review_id") -> None:
        data, lines = load_yaml(resolve_mapping_ref(mapping, Path(".")))
        compiled = compile_mapping(data, lines)
        self.rt.ingestor.ingest(source, compiled, [RawRecord(source, str(r[id_key]), r) for r in records])

    def ingest_review(
        self,
        n: int,
        *,
        store: str = "S001",
        rating: int = 1,
        text: str = "牛奶是坏的，店员态度很差",
        member: str = "M001",
        phone: str | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "review_id": f"rv-{store}-{n}",
            "created_at": "2026-11-22T10:00:00+08:00",
            "platform": "meituan",
            "store_code": store,
            "store_name": self.tree.store_name(store),
            "order_id": f"O-{store}-{n}",
            "rating": rating,
            "content": text,
            "member_no": member,
        }
        if phone:
            record["phone"] = phone
        self.ingest("reviews", "generic_review", record)


@pytest.fixture(params=["sqlite"])
def console(request: pytest.FixtureRequest, tmp_path: Path, clock: Any) -> Iterator[ConsoleKit]:
    """A console on SQLite (parametrise with ``indirect`` and "postgresql" for the real one)."""
    if request.param == "postgresql":
        store: Store = request.getfixturevalue("pg_store")
        db = store.url
    else:
        db = f"sqlite:///{tmp_path / 'console.db'}"
    rt = build_runtime(console_config(db), path=tmp_path / "cxhub.yaml", clock=clock)
    kit = ConsoleKit(rt)
    try:
        yield kit
    finally:
        rt.close()


# -- walking every route of the console (the authorisation and security tests) ----------------------

#: routes anyone may call without signing in (the sign-in form and the platforms' sign-in callbacks)
PUBLIC_PREFIXES = ("/console/login", "/console/oauth", "/console/auth", "/console/static", "/console/sso")


@dataclass(frozen=True)
class ConsoleRoute:
    """One route of the console as the app serves it: path template, method, the permission its
    guard demands (None: any signed-in user; ``"public"``: no guard), its query parameters."""

    path: str
    method: str
    permission: str | None
    guarded: bool
    query: tuple[str, ...]
    endpoint: str

    @property
    def api(self) -> bool:
        return self.path.startswith("/console/api/")

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^}:]+)(?::[^}]+)?}", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _guard_permission(dependant: Any) -> tuple[bool, str | None]:
    """Whether a route's dependencies include the console's guard, and the permission it holds."""
    stack = [dependant]
    while stack:
        d = stack.pop()
        call = getattr(d, "call", None)
        if call is not None and "guard.<locals>" in getattr(call, "__qualname__", ""):
            cells = dict(zip(call.__code__.co_freevars, call.__closure__ or (), strict=False))
            cell = cells.get("permission")
            return True, cell.cell_contents if cell is not None else None
        stack.extend(getattr(d, "dependencies", []) or [])
    return False, None


def console_routes(app: Any) -> list[ConsoleRoute]:
    """Every route under /console of ``create_app(rt)`` (the hook fast path's FastAPI app inside),
    one entry per method; HEAD and the static files left out."""
    inner = getattr(app, "app", app)
    found: list[tuple[str, Any]] = []
    for route in inner.routes:
        if hasattr(route, "effective_route_contexts"):  # FastAPI's included routers
            for ctx in route.effective_route_contexts():
                original = ctx.original_route
                path = ctx.path or (ctx.frontend_prefix + getattr(original, "path", ""))
                found.append((path, original))
        else:
            found.append((getattr(route, "path", ""), route))
    out: list[ConsoleRoute] = []
    for path, route in found:
        if not path.startswith("/console") or path.startswith("/console/static"):
            continue
        dependant = getattr(route, "dependant", None)
        guarded, permission = _guard_permission(dependant) if dependant is not None else (False, None)
        query = tuple(p.alias or p.name for p in getattr(dependant, "query_params", []) or [])
        endpoint = getattr(getattr(route, "endpoint", None), "__module__", "?")
        endpoint += "." + getattr(getattr(route, "endpoint", None), "__name__", "?")
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            out.append(ConsoleRoute(path, method, permission, guarded, query, endpoint))
    return sorted(set(out), key=lambda r: (r.path, r.method))


@dataclass
class StoreData:
    """The objects one store's reviews left behind, and the marks that betray them in a response."""

    store: str
    texts: list[str]
    case_ids: list[int]
    touchpoint_ids: list[str]
    customer_ids: list[str]
    external_ids: list[str]
    quarantine_ids: list[int]
    outbox_ids: list[int]
    phone: str
    tag: str = ""

    def marks(self) -> list[str]:
        """Strings no response for another store's user may hold (case ids are matched separately:
        a bare number is everywhere); the texts' common head catches a shortened text too."""
        head = f"{self.tag or self.store}号投诉"
        return [head, *self.texts, *self.touchpoint_ids, *self.customer_ids, *self.external_ids, self.phone]


def seed_store(kit: ConsoleKit, store: str, *, n: int = 2, phone: str = "13812345678", tag: str = "") -> StoreData:
    """``n`` negative reviews of ``store`` through the real ingest (cases, touchpoints and a customer
    of that store only), one of them carrying ``phone`` in its text and as the buyer's mobile, and a
    record of that store that the mapping refuses (a quarantine row)."""
    from sqlalchemy import select

    from hub.features.feedback.schema import case_touchpoints, cases
    from hub.store.schema import outbox, quarantine, touchpoints

    tag = tag or store
    texts = [f"{tag}号投诉{i}：冰淇淋化了，店员不理人" for i in range(n)]
    records = []
    for i, text in enumerate(texts):
        records.append(
            {
                "review_id": f"rv-{tag}-{i}",
                "created_at": "2026-11-22T10:00:00+08:00",
                "platform": "meituan",
                "store_code": store,
                "store_name": kit.tree.store_name(store),
                "order_id": f"O-{tag}-{i}",
                "rating": 1,
                "content": text + (f" 请回电{phone}" if i == 0 else ""),
                "member_no": f"M-{tag}",
                **({"mobile": phone} if i == 0 else {}),
            }
        )
    kit.ingest("reviews", "generic_review", *records)
    kit.ingest(
        "reviews",
        "generic_review",
        {
            "review_id": f"rv-{tag}-bad",
            "created_at": "not a date",
            "store_code": store,
            "rating": 1,
            "content": texts[0],
        },
    )
    with kit.rt.store.connect() as conn:
        tps = conn.execute(
            select(touchpoints.c.id, touchpoints.c.customer_id, touchpoints.c.external_id).where(
                touchpoints.c.store == store, touchpoints.c.external_id.like(f"rv-{tag}-%")
            )
        ).all()
        tp_ids = [r.id for r in tps]
        case_ids = sorted(
            {
                int(r[0])
                for r in conn.execute(
                    select(case_touchpoints.c.case_id).where(case_touchpoints.c.touchpoint_id.in_(tp_ids))
                )
            }
            | {int(r[0]) for r in conn.execute(select(cases.c.id).where(cases.c.touchpoint_id.in_(tp_ids)))}
        )
        q_ids = [
            int(r[0]) for r in conn.execute(select(quarantine.c.id).where(quarantine.c.external_id.like(f"rv-{tag}-%")))
        ]
        o_ids = [
            int(r[0])
            for r in conn.execute(select(outbox.c.id).where(outbox.c.cause.in_([f"case:{c}" for c in case_ids])))
        ]
    return StoreData(
        store=store,
        texts=texts,
        case_ids=case_ids,
        touchpoint_ids=tp_ids,
        customer_ids=sorted({r.customer_id for r in tps if r.customer_id}),
        external_ids=[f"rv-{tag}-{i}" for i in range(n)],
        quarantine_ids=q_ids,
        outbox_ids=o_ids,
        phone=phone,
        tag=tag,
    )


def text_of(response: Any) -> str:
    """A response's text as a person would read it: an Excel export's cells too."""
    ctype = response.headers.get("content-type", "")
    if "spreadsheetml" in ctype or response.content[:2] == b"PK":
        import io

        from openpyxl import load_workbook

        book = load_workbook(io.BytesIO(response.content), read_only=True)
        cells = [str(c) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row if c]
        return "\n".join(cells)
    return str(response.text)


@dataclass
class World:
    """A console with two stores' data, and every route to walk."""

    kit: ConsoleKit
    mine: StoreData  # S002's
    theirs: StoreData  # S001's
    s001_user_id: int
    s001_login: str
    routes: list[ConsoleRoute]
    unfilled: list[str] = field(default_factory=list)


def _values(world: World, route: ConsoleRoute, name: str) -> list[str] | None:
    """Real S001 objects for a path parameter; None when the name is unknown here."""
    s = world.theirs
    path = route.path
    kind = name
    before = path.split("{" + name)[0].rstrip("/").rsplit("/", 1)[-1]
    by_segment = {
        "cases": "case_id",
        "case": "case_id",
        "customers": "customer_id",
        "customer": "customer_id",
        "quarantine": "quarantine_id",
        "outbox": "outbox_id",
        "users": "user_id",
        "touchpoints": "touchpoint_id",
        "tokens": "token_id",
        "connectors": "source",
        "sources": "source",
        "destinations": "destination",
        "tiles": "tile",
        "surveys": "survey",
        "invitations": "invitation_id",
    }
    if name in ("id", "pk", "ref", "name", "key", "qid", "cid", "uid", "tid", "oid"):
        kind = by_segment.get(before, name)
    if kind == "tile":
        return [t.name for t in world.kit.rt.console.tiles] or ["unknown-tile"]
    if kind in ("case_id", "case"):
        return [str(i) for i in s.case_ids]
    if kind in ("customer_id", "customer"):
        return s.customer_ids
    if kind in ("touchpoint_id", "touchpoint"):
        return s.touchpoint_ids
    if kind in ("quarantine_id", "record_id", "qid"):
        return [str(i) for i in s.quarantine_ids]
    if kind in ("outbox_id", "message_id", "dead_id"):
        return [str(i) for i in s.outbox_ids] or ["1"]
    if kind in ("user_id", "login"):
        return [str(world.s001_user_id) if kind == "user_id" else world.s001_login]
    if kind == "token_id":
        return ["1"]
    fixed = {
        "store": ["S001"],
        "store_id": ["S001"],
        "unit": ["S001"],
        "source": ["reviews"],
        "destination": ["robot"],
        "provider": ["dingtalk", "feishu", "wecom"],
        "lang": ["en"],
        "locale": ["en"],
        "format": ["csv", "xlsx"],
        "fmt": ["csv", "xlsx"],
        "ext": ["csv", "xlsx"],
        "action": ["ack", "acknowledge", "resolve", "reopen", "not-negative"],
        "rule": ["default"],
        "survey": ["default"],
        "survey_id": ["default"],
        "questionnaire": ["default"],
        "invitation_id": ["1"],
        "topic": ["服务态度"],
        "metric": ["nps", "csat"],
        "panel": ["cases"],
        "part": ["cases"],
    }
    return fixed.get(kind)


#: query parameters that can name S001 (a filter asking for another store's data)
def _query(world: World, route: ConsoleRoute) -> dict[str, str]:
    s = world.theirs
    by_name = {
        "store": "S001",
        "store_id": "S001",
        "stores": "S001",
        "unit": "sh",
        "district": "sh",
        "region": "east",
        "customer": s.customer_ids[0],
        "customer_id": s.customer_ids[0],
        "case": str(s.case_ids[0]),
        "case_id": str(s.case_ids[0]),
        "touchpoint_id": s.touchpoint_ids[0],
        # a search that S002's texts match too (S001's must stay out; the value itself is echoed)
        "q": "投诉0：冰淇淋",
        "search": "投诉0：冰淇淋",
        "text": "投诉0：冰淇淋",
        "phone": s.phone,
        "lookup": s.phone,
        "identity": s.phone,
        "member": f"M-{s.store}",
        "format": "csv",
    }
    return {k: by_name[k] for k in route.query if k in by_name}


def urls(world: World, route: ConsoleRoute) -> list[str]:
    """Every concrete URL of a route with S001's objects; records the routes it cannot fill."""
    filled = [route.path]
    for name in route.params:
        values = _values(world, route, name)
        if values is None:
            world.unfilled.append(f"{route} (parameter {{{name}}})")
            return []
        pattern = re.compile(r"{" + re.escape(name) + r"(?::[^}]+)?}")
        filled = [pattern.sub(v, u, count=1) for u in filled for v in values]
    out = list(filled)
    query = _query(world, route)
    if query:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        out += [f"{u}?{qs}" for u in filled]
        if "format" in query:
            out += [f"{u}?{qs.replace('format=csv', 'format=xlsx')}" for u in filled]
    return out


def seed_world(kit: ConsoleKit) -> World:
    """Two stores' reviews (S002: the viewer's own, S001: the one to hide), S001's manager, the routes."""
    from hub.console.accounts import Accounts

    mine = seed_store(kit, "S002", phone="13900001111")
    theirs = seed_store(kit, "S001", phone="13812345678")
    login = kit.add_user("store_manager", "S001", login="xuhui-manager")
    user = Accounts(kit.rt.store).find_user(login)
    assert user is not None
    assert theirs.case_ids and theirs.customer_ids and theirs.quarantine_ids, theirs
    return World(kit, mine, theirs, user.id, login, console_routes(kit.app))


def _case_ids_in(body: str, path: str) -> set[int]:
    """Case ids a response names: links to case pages, and ``case_id`` (or a case's ``id``) in JSON."""
    found = {int(m) for m in re.findall(r"/cases/(\d+)(?![\d])", body)}
    try:
        data = json.loads(body)
    except ValueError:
        return found
    stack: list[Any] = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                named = k == "case_id" or (k == "id" and "case" in path)
                if named and (isinstance(x, int) or (isinstance(x, str) and x.isdigit())):
                    found.add(int(x))
                stack.append(x)
        elif isinstance(v, list):
            stack.extend(v)
    return found


def leaks(body: str, url: str, s: StoreData, *, business: bool) -> list[str]:
    """What of S001 a response body holds: the unmasked phone always; its texts, ids and name when
    the viewer must not see S001's business data. What the URL itself holds (an id, a phone number
    to look up) may come back as the viewer's own input: the rest of the answer must betray nothing."""
    from urllib.parse import unquote

    asked = unquote(url)
    for mark in (s.phone, *s.customer_ids, *s.touchpoint_ids):
        if mark in asked:
            body = body.replace(mark, "")
    found = [s.phone] if s.phone in body else []
    if business:
        found += [m for m in s.marks() if m in body and m != s.phone]
        if "徐汇店" in body:
            found.append("徐汇店")
        found += [f"case {i}" for i in sorted(_case_ids_in(body, url) & set(s.case_ids))]
    return found


def answering(client: TestClient) -> TestClient:
    """The client with a route's exception answered as a 500 (as a server would), instead of raised
    into the test: a walk over every route reports all the failures at once."""
    client._transport.raise_server_exceptions = False  # type: ignore[attr-defined]
    return client


def filters_of(route: ConsoleRoute, page: str) -> list[str]:
    """The filter parameters of a page: those its route declares, and the fields of its GET forms
    (a page may read ``request.query_params`` itself)."""
    names = list(route.query)
    for form in re.findall(r"<form\b([^>]*)>(.*?)</form>", page, flags=re.S | re.I):
        attrs, body = form
        if re.search(r"method=[\"']?post", attrs, flags=re.I):
            continue
        for name in re.findall(r"<(?:input|select|textarea)\b[^>]*\bname=[\"']([^\"']+)", body, flags=re.I):
            if name not in names and name not in ("csrf", "login_csrf", "next", "lang"):
                names.append(name)
    return names
