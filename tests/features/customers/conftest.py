"""Helpers of the customers tests: a hub with a touchpoint source of every kind, fed through the
real ingest (mapping, identity, hooks)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kit.runtime import build_runtime

from hub.runtime import Runtime
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock

SECRET = "test-secret-key"

MAPPING = {
    "name": "cx_events",
    "fields": {
        "kind": "kind",
        "occurred_at": {"path": "at", "type": "datetime"},
        "org.store": "store",
        "order.amount": {"path": "total", "type": "decimal"},
        "customer.identities": {"member_id": "member", "phone": "phone", "openid": "openid"},
        "feedback.nps": {"path": "nps", "type": "int"},
        "feedback.rating": {"path": "rating", "type": "decimal"},
        "feedback.text": "text",
        "feedback.sentiment": {"path": "sentiment", "type": "float"},
        "feedback.topics": {"path": "topics", "type": "json"},
    },
}

ORG = {
    "regions": {"east": {"name": "华东"}, "north": {"name": "华北"}},
    "districts": {"sh": {"parent": "east"}, "hz": {"parent": "east"}, "bj": {"parent": "north"}},
    "stores": {"S001": {"parent": "sh"}, "S002": {"parent": "hz"}, "S003": {"parent": "bj"}},
}


def config(store_url: str, customers: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "secret_key": SECRET,
        "store": {"url": store_url},
        "server": {"public_url": "https://cx.example.com"},
        "sources": {"events": {"connector": "webhook", "options": {"secret": "whsec_dGVzdA=="}, "mapping": MAPPING}},
        "feedback": {"org": ORG},
        "customers": customers or {"min_purchases": 2, "fit_sample": 100},
    }
    data.update(extra)
    return data


def feed(rt: Runtime, *records: dict[str, Any]) -> Any:
    """Ingest raw event records (``id``, ``kind``, ``at``, ``member``... see MAPPING)."""
    raws = [RawRecord("events", r["id"], r, rt.clock()) for r in records]
    return rt.ingestor.ingest("events", rt.mapping("events"), raws)


def tx(
    n: str,
    at: str,
    member: str | None,
    total: Any = "100.00",
    store: str = "S001",
    kind: str = "transaction",
    **kw: Any,
) -> dict[str, Any]:
    return {"id": n, "kind": kind, "at": at, "member": member, "store": store, "total": total, **kw}


@pytest.fixture
def make_hub(tmp_path: Any, clock: FakeClock) -> Any:
    made: list[Runtime] = []

    def make(store_url: str | None = None, **kw: Any) -> Runtime:
        url = store_url or f"sqlite:///{tmp_path / 'cx.db'}"
        rt = build_runtime(
            yaml.safe_dump(config(url, **kw), allow_unicode=True), path=tmp_path / "cxhub.yaml", clock=clock
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def hub_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A store URL: a SQLite file, or a fresh PostgreSQL database (param ``postgresql``)."""
    return f"sqlite:///{tmp_path / 'cx.db'}"
