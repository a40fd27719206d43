"""End to end with real time: review feed -> case -> outbox -> delivery -> local fake DingTalk robot
(checks the 加签 signature and the 20/min limit) -> the acknowledge link; escalation when nobody
acknowledges; a burst of 200 negative reviews for one store's robot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kit.cases import FakeReviewFeed, review_record, write_runtime_config
from kit.runtime import build_runtime

from commands.demo.fake_dingtalk import FakeDingTalkRobot
from hub.sync import run_sync

SECRETS = {"tok-s001": "SEC-s001", "tok-district": "SEC-district"}


def append(feed: Path, *records: dict[str, Any]) -> None:
    with feed.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def ack_path(robot: FakeDingTalkRobot, base: str, index: int = 0) -> str:
    card = robot.received[index]
    [ack] = [b["actionURL"] for b in card.buttons if "/ack?" in b["actionURL"]]
    return ack.replace(base, "")


def test_one_star_reaches_the_store_robot_and_the_link_stops_escalation(tmp_path: Path) -> None:
    from hub.features.delivery import build_worker
    from hub.web import create_app

    feed = FakeReviewFeed()
    with FakeDingTalkRobot(dict(SECRETS)) as robot:
        path = write_runtime_config(tmp_path, robot=robot.base_url, ack="2s", http_feed=feed.base_url)
        rt = build_runtime(path)
        worker = build_worker(rt)
        try:
            # the review platform's feed now returns a 1-star review
            feed.records.append(review_record(1, rating=1, text="买的酸奶过期了，店员还不理人"))
            started = time.monotonic()
            run_sync(rt, "reviews")
            worker.drain()
            assert robot.wait_for(1, 5)
            latency = time.monotonic() - started
            assert latency < 2.0, latency
            assert robot.rejected == []  # the signature was right
            card = robot.received[0]
            assert card.token == "tok-s001" and card.body["msgtype"] == "actionCard"
            for part in ("徐汇店", "★☆☆☆☆ 1/5", "酸奶过期", "O-1", "受理时限"):
                assert part in card.text, part
            assert [b["title"] for b in card.buttons] == ["确认受理", "已解决", "不是差评", "查看详情"]
            # follow the link: the page, then its button
            client = TestClient(create_app(rt))
            url = ack_path(robot, rt.config.raw.server.public_url)
            page = client.get(url)
            token = re.search(r'name="t" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            assert "已确认受理" in client.post(url.split("?")[0], data={"t": token, "by": "王店长"}).text
            time.sleep(2.3)  # past the 2 s acknowledge target
            service = rt.features["feedback"]
            service.sweep()
            worker.drain()
            time.sleep(0.2)
            assert [r.token for r in robot.received] == ["tok-s001"]  # nothing escalated
            assert service.list()[0]["status"] == "acknowledged"
        finally:
            rt.close()
            feed.close()


def test_burst_of_200_for_one_robot_respects_20_per_minute_and_reaches_staff(tmp_path: Path) -> None:
    from hub.features.delivery import build_worker

    with FakeDingTalkRobot(dict(SECRETS)) as robot:
        path = write_runtime_config(tmp_path, robot=robot.base_url)
        rt = build_runtime(path)
        worker = build_worker(rt)
        try:
            feed = Path(rt.config.sources["reviews"].options.path)  # type: ignore[attr-defined]
            append(feed, *(review_record(i, member=f"M{i:04d}") for i in range(200)))
            run_sync(rt, "reviews")
            cases = rt.features["feedback"].list(limit=1000)
            assert len(cases) == 200
            deadline = time.monotonic() + 30
            wanted = {c["id"] for c in cases}
            seen: set[int] = set()
            while time.monotonic() < deadline and seen != wanted:
                worker.run_once()
                seen = {int(m) for r in robot.received for m in re.findall(r"工单 #(\d+)\*\*", r.text)}
                time.sleep(0.05)
            assert seen == wanted, f"{len(wanted - seen)} case(s) never reached the robot"
            assert robot.max_per_minute("tok-s001") <= 20
            assert not [r for r in robot.rejected if r[1] == "rate limited"]
            print(f"200 cases in {len(robot.received)} robot messages")
        finally:
            rt.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stored(db: Path, external_id: str) -> bool:
    import sqlite3

    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            found = conn.execute("SELECT 1 FROM touchpoints WHERE external_id = ?", (external_id,)).fetchone()
    except sqlite3.Error:  # not migrated yet, or busy
        return False
    return found is not None


def test_cxhub_run_escalates_on_time_when_nobody_acknowledges(tmp_path: Path) -> None:
    """``cxhub run`` as a subprocess with short real timeouts: the store robot gets the card; the
    acknowledged case never escalates; the one nobody acknowledges reaches the district robot
    about when its 12 s target breaks (the target is long enough for a polled feed on a busy host)."""
    with FakeDingTalkRobot(dict(SECRETS)) as robot:
        port = _free_port()
        path = write_runtime_config(tmp_path, robot=robot.base_url, port=port, ack="12s", sweep="0.25s")
        text = path.read_text(encoding="utf-8").replace(
            "connector: jsonl", "connector: jsonl\n    schedule: {every: 0.5s}"
        )
        path.write_text(text, encoding="utf-8")
        env = {
            **os.environ,
            "CXHUB_DELIVERY_POLL_SECONDS": "0.1",
            "CXHUB_SECRET_KEY": "test-secret-key",
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "run", "--config", str(path), "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        t_start = time.monotonic()
        try:
            for _ in range(100):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                proc.terminate()
                pytest.fail("cxhub run did not come up: " + proc.communicate(timeout=10)[0].decode()[-2000:])
            print(f"up after {time.monotonic() - t_start:.1f}s")
            feed = tmp_path / "reviews.jsonl"
            # warm-up: a 5-star review, stored once the first syncs ran and the model is loaded,
            # so that the SLA timings below measure the running pipeline, not its start
            append(feed, review_record(0, rating=5, text="很好，下次还来", member="M0"))
            warm = time.monotonic()
            while time.monotonic() - warm < 60 and not _stored(tmp_path / "cxhub.db", "rv-0"):
                time.sleep(0.1)
            assert _stored(tmp_path / "cxhub.db", "rv-0"), "the warm-up review was never stored"
            print(f"warm after {time.monotonic() - t_start:.1f}s")
            appended = time.time()
            append(feed, review_record(1, member="M1"))
            assert robot.wait_for(1, 30), "the store robot got nothing"
            # a polled feed: within the poll interval (0.5 s) + 2 s of the review appearing
            polled_latency = robot.received[0].at - appended
            print(f"polled feed -> robot: {polled_latency:.2f}s")
            assert polled_latency < 10, polled_latency  # seconds, where the promise is minutes (a loaded CI host)
            url = ack_path(robot, base)
            page = httpx.get(base + url)
            token = re.search(r'name="t" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            # a link is no identity: the page asks who acknowledges
            assert "已确认受理" in httpx.post(base + url.split("?")[0], data={"t": token, "by": "王店长"}).text
            t_open = time.monotonic()
            append(feed, review_record(2, member="M2", text="门店卖过期面包"))
            assert robot.wait_for(2, 30)
            district: list[Any] = []
            while time.monotonic() - t_open < 60 and not district:
                district = [r for r in robot.received if r.token == "tok-district"]
                time.sleep(0.05)
            assert district, "no escalation to the district robot"
            escalated_after = district[0].at - (time.time() - (time.monotonic() - t_open))
            assert "已升级至" in district[0].text and "工单 #2**" in district[0].text
            # never before the 12 s target breaks; after it by the sweep, poll and sync slack (wider on a loaded host)
            assert 11.5 < escalated_after < 45, escalated_after
            store_msgs = [r.text for r in robot.received if r.token == "tok-s001"]
            # the pre-breach warning came first, unless the sweep itself ran only after the deadline
            # (a loaded host): then the case escalates at once, which is what it must do
            warned = any("即将超时" in t for t in store_msgs)
            assert warned or escalated_after > 12.2, ([t[:80] for t in store_msgs], escalated_after)
            time.sleep(1.0)
            district = [r for r in robot.received if r.token == "tok-district"]
            assert all("工单 #1**" not in r.text for r in district)  # the acknowledged case never escalated
            assert robot.rejected == []
            print(f"checks done after {time.monotonic() - t_start:.1f}s")
        finally:
            proc.terminate()
            try:
                proc.wait(15)
                print(f"stopped after {time.monotonic() - t_start:.1f}s")
            except subprocess.TimeoutExpired:
                proc.kill()
