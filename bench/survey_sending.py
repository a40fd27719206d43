"""What the send-time check costs: survey invitations delivered per second with and without it.

On a throwaway PostgreSQL database (tests.kit.databases), ``N`` (1,000) survey invitations are
decided at ingest, then delivered by the real delivery worker and ``wechat_message`` connector
(wechatpy, ``stable_token``) to the local fake WeChat of the demo (``commands/demo/fake_wechat.py``,
over HTTP). The same worker runs with the surveys feature's send-time check (one lookup of the
invitation by its outbox key, the opt-out and quiet-hours checks) and without it (the peer:
``sender.checks`` emptied), in ``BENCH_ROUNDS`` (3) interleaved rounds; best and median per
configuration, their ratio, and the load average (the machine is shared).

    .venv/bin/python bench/survey_sending.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.demo.fake_wechat import FakeWeChat
from hub.config import load_config
from hub.features.delivery import build_worker
from hub.runtime import Runtime
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from tests.kit.databases import temporary_postgres_database

N, BATCH = 1000, 500
SECRET = "bench-wechat-secret"
MAPPING = {
    "name": "checkout",
    "kind": "transaction",
    "fields": {
        "occurred_at": {"path": "paid_at", "type": "datetime"},
        "org.store": "store",
        "order.id": "receipt",
        "order.items": {"each": "items", "fields": {"name": "name", "category": "cat"}},
        "customer.identities": {"member_id": "member", "openid": "openid"},
    },
}


def config(store_url: str, wechat_url: str) -> dict[str, Any]:
    return {
        "secret_key": "bench-secret",
        "store": {"url": store_url},
        "destinations": {
            "wechat": {
                "connector": "wechat_message",
                "options": {"app_id": "wxbench", "app_secret": SECRET, "api": "oa_template", "base_url": wechat_url},
            }
        },
        "sources": {"pos": {"connector": "webhook", "options": {"secret": "whsec_YmVuY2g="}, "mapping": MAPPING}},
        "surveys": {
            "quiet_hours": {"start": "21:30", "end": "08:30"},
            "channels": [
                {
                    "channel": "wechat_template",
                    "destination": "wechat",
                    "template": "TPL",
                    "fields": {"first": "{survey}", "keyword1": "{store_name}", "remark": "有效期至{expires}"},
                }
            ],
            "rules": [{"name": "after_checkout", "questionnaire": "retail", "delay": "30m"}],
        },
    }


def run(store_url: str, wechat: FakeWeChat, checks: bool, workdir: Path) -> float:
    """Seconds to deliver N invitations (the worker's pumps only; ingest is not timed)."""
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump(config(store_url, wechat.base_url), allow_unicode=True), encoding="utf-8")
    clock = FakeClock(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai
    rt = Runtime(load_config(path), clock=clock)
    rt.migrate()
    start = clock() - timedelta(minutes=20)
    recs = [
        {
            "receipt": f"R{i}",
            "paid_at": (start + timedelta(milliseconds=i)).isoformat(),
            "store": "S001",
            "member": f"M{i}",
            "openid": f"oBench{i:06d}",
            "items": [{"name": "牛奶", "cat": "乳制品"}],
        }
        for i in range(N)
    ]
    for i in range(0, N, BATCH):
        raws = [RawRecord("pos", r["receipt"], r, clock()) for r in recs[i : i + BATCH]]
        rt.ingestor.ingest("pos", rt.mapping("pos"), raws)
    clock.advance(minutes=15)  # every invitation is due
    worker = build_worker(rt)
    if not checks:
        worker.sender.checks = list
    before = len(wechat.received)
    started = time.perf_counter()
    result = worker.drain()
    seconds = time.perf_counter() - started
    worker.close()
    rt.close()
    got = len(wechat.received) - before
    if result.sent != N or got != N:
        raise SystemExit(f"expected {N} delivered, the worker sent {result.sent} and the fake got {got}")
    return seconds


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    os.environ.setdefault("CXHUB_LOG_LEVEL", "WARNING")
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    print(f"load average before: {load_average()} ({os.cpu_count()} cores); {N} invitations, {rounds} rounds")
    times: dict[str, list[float]] = {"with the send-time check": [], "without (peer)": []}
    with FakeWeChat({"wxbench": SECRET}) as wechat, tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for label, checks in (("with the send-time check", True), ("without (peer)", False)):
                with temporary_postgres_database() as url:
                    times[label].append(run(url, wechat, checks, Path(tmp)))
    for label, ts in times.items():
        best, median = min(ts), statistics.median(ts)
        print(f"postgresql  {label:26s} best {N / best:7.0f} msg/s  median {N / median:7.0f} msg/s")
    ratio = min(times["with the send-time check"]) / min(times["without (peer)"])
    print(f"send-time check: {ratio:.2f}x the delivery time of the peer (best rounds)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
