"""The console under test: a hub with a small org (two regions, three districts, four stores), its
web app through Starlette's TestClient, and users of every role.

``console`` fixture -> :class:`ConsoleKit`: ``kit.user("store_manager", "S001")`` adds a user and
returns a signed-in client (``client.csrf`` holds its session's CSRF token); ``kit.ingest_review``
and ``kit.ingest_checkout`` bring touchpoints in through the real ingest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
