"""What the survey rules cost at ingest: checkouts per second with and without a survey rule.

Runs on a throwaway SQLite file and a throwaway PostgreSQL database (hub.testing), 4,000 member
checkouts (2,000 distinct customers) in batches of 500. Prints one line per (store, rules) pair.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.config import load_config
from hub.connector import RawRecord
from hub.runtime import Runtime
from hub.testing import FakeClock, temporary_postgres_database

N, BATCH, CUSTOMERS = 4000, 500, 2000
MAPPING = {
    "name": "checkout",
    "kind": "transaction",
    "fields": {
        "occurred_at": {"path": "paid_at", "type": "datetime"},
        "org.store": "store",
        "order.id": "receipt",
        "order.amount": {"path": "total", "type": "decimal"},
        "order.items": {
            "each": "items",
            "fields": {"name": "name", "category": "cat", "price": {"path": "price", "type": "decimal"}},
        },
        "customer.identities": {"member_id": "member", "phone": "phone"},
    },
}
SURVEYS = {
    "quiet_hours": {"start": "21:30", "end": "08:30"},
    "caps": [{"max": 1, "per": "7d"}],
    "channels": [{"channel": "sms", "destination": "sms"}],
    "rules": [{"name": "after_checkout", "questionnaire": "retail", "delay": "30m", "sample": 0.5}],
}


def records(start: datetime) -> list[dict[str, Any]]:
    out = []
    for i in range(N):
        c = i % CUSTOMERS
        out.append(
            {
                "receipt": f"R{i}",
                "paid_at": (start + timedelta(seconds=i)).isoformat(),
                "store": f"S{i % 20:03d}",
                "total": "60.00",
                "member": f"M{c}",
                "phone": f"139{c:08d}",
                "items": [
                    {"name": "菠菜", "cat": "生鲜", "price": "25.60"},
                    {"name": "牛奶", "cat": "乳制品", "price": "32.00"},
                ],
            }
        )
    return out


def run(store_url: str, with_rules: bool, workdir: Path) -> float:
    data: dict[str, Any] = {
        "secret_key": "bench-secret",
        "store": {"url": store_url},
        "sources": {"pos": {"connector": "webhook", "options": {"secret": "whsec_YmVuY2g="}, "mapping": MAPPING}},
    }
    if with_rules:
        # the destination only has to exist in the config: the bench measures enqueueing, not sending
        data["destinations"] = {
            "sms": {
                "connector": "sms",
                "options": {"access_key_id": "bench", "access_key_secret": "bench", "sign_name": "bench"},
            }
        }
        data["surveys"] = SURVEYS
    path = workdir / f"bench-{int(with_rules)}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    clock = FakeClock(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))
    rt = Runtime(load_config(path), clock=clock)
    rt.migrate()
    recs = records(clock() - timedelta(hours=2))
    started = time.perf_counter()
    for i in range(0, N, BATCH):
        raws = [RawRecord("pos", r["receipt"], r, clock()) for r in recs[i : i + BATCH]]
        rt.ingestor.ingest("pos", rt.mapping("pos"), raws)
    seconds = time.perf_counter() - started
    rt.close()
    return seconds


def main() -> None:
    os.environ.setdefault("CXHUB_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, with_rules in (("no survey rules", False), ("1 survey rule", True)):
            url = f"sqlite:///{work / f'bench-{int(with_rules)}.db'}"
            s = run(url, with_rules, work)
            print(f"sqlite     {label:16s} {N} checkouts in {s:6.2f}s = {N / s:7.0f}/s")
        for label, with_rules in (("no survey rules", False), ("1 survey rule", True)):
            with temporary_postgres_database() as url:
                s = run(url, with_rules, work)
            print(f"postgresql {label:16s} {N} checkouts in {s:6.2f}s = {N / s:7.0f}/s")


if __name__ == "__main__":
    main()
