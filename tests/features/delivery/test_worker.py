"""The delivery worker on SQLite and PostgreSQL: outcomes, retries, budgets, digests, crashes."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from kit.destinations import DestinationFactory
from kit.fakes import FakePlatform
from kit.outbox import FAST, msgs, put, rows, run_until_done, worker
from sqlalchemy import select

from hub.errors import RetriableError
from hub.outbox.tables import outbox_batches
from hub.sdk.connector import Destination, OutboundMessage, Receipt
from hub.sdk.policy import RetryPolicy
from hub.sdk.testing import FakeClock
from hub.store import Store


def test_sent_rows_record_the_platform_receipt(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("wecom_app", transport=httpx.MockTransport(fake.handler), kv=store)
    put(store, clock, "staff", msgs(3, to=["zhangsan"]))
    result = worker(store, clock, {"staff": dst}).run_once()
    assert (result.claimed, result.sent, result.calls) == (3, 3, 3)
    for r in rows(store):
        assert r["status"] == "sent" and r["attempts"] == 1 and r["sent_at"] == clock()
        assert re.fullmatch(r"m\d+", r["receipt"]) and r["locked_by"] is None


@pytest.mark.parametrize("kind", ["feishu_app", "wecom_robot", "dingtalk_robot"])
def test_outage_then_recovery_delivers_every_message_exactly_once(
    kind: str, store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination(kind, transport=httpx.MockTransport(fake.handler), kv=store)
    fake.fail_next, fake.timeout_next = 9, 4  # 500s, then timeouts, then the platform recovers
    put(store, clock, "d", msgs(10, to=["ou_1"]))
    run_until_done(worker(store, clock, {"d": dst}), clock, step=15, store=store)
    assert fake.keys() == {f"m-{i}": 1 for i in range(10)}
    final = rows(store)
    assert {r["status"] for r in final} == {"sent"}
    assert max(r["attempts"] for r in final) > 1  # the outage was felt, and retried through


def test_permanent_errors_are_dead_at_once_with_the_reason(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("wechat_message", transport=httpx.MockTransport(fake.handler), kv=store)
    put(store, clock, "wx", [OutboundMessage(key="a", title="t", body="b", to=["unsub-1"])])
    put(store, clock, "wx", [OutboundMessage(key="b", title="t", body="b", to=["bad-openid"])])
    worker(store, clock, {"wx": dst}).run_once()
    dead = {r["key"]: r for r in rows(store)}
    assert (
        dead["a"]["status"] == "dead"
        and "43101" in dead["a"]["last_error"]
        and "not subscribed" in dead["a"]["last_error"]
    )
    assert dead["b"]["status"] == "dead" and "40003" in dead["b"]["last_error"]
    assert dead["a"]["attempts"] == 1


class Flaky(Destination):
    """A destination that fails as told: for policy tests without a platform."""

    kind = "flaky"
    title = "test double"

    def __init__(self, errors: list[Exception]):
        from hub.sdk.connector import ConnectorOptions

        super().__init__("flaky", ConnectorOptions())
        self.errors = errors
        self.sent: list[str] = []

    def send(self, message: OutboundMessage) -> Receipt:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message.key)
        return Receipt(message_id="ok-1")


def test_backoff_grows_retry_after_is_honoured_and_attempts_run_out(store: Store, clock: FakeClock) -> None:
    dst = Flaky([RetriableError("busy", retry_after=120)] + [RetriableError("down")] * 5)
    put(store, clock, "f", msgs(1))
    w = worker(store, clock, {"f": dst}, policy=RetryPolicy(initial=5, max_delay=3600, max_attempts=3, jitter=1))
    t0 = clock()
    w.run_once()
    (r,) = rows(store)
    assert r["status"] == "failed" and r["next_attempt_at"] == t0 + timedelta(seconds=120)  # Retry-After wins
    assert w.run_once().claimed == 0  # not due yet
    clock.set(r["next_attempt_at"])
    w.run_once()
    (r,) = rows(store)
    delay = (r["next_attempt_at"] - clock()).total_seconds()
    assert r["status"] == "failed" and 10 <= delay <= 11  # 5 * 2**1 plus jitter
    clock.set(r["next_attempt_at"])
    w.run_once()
    (r,) = rows(store)
    assert r["status"] == "dead" and r["last_error"].startswith("gave up after 3 attempts") and r["attempts"] == 3
    assert dst.sent == []


def test_unexpected_connector_bugs_are_retried_not_fatal(store: Store, clock: FakeClock) -> None:
    dst = Flaky([ZeroDivisionError("oops")])
    put(store, clock, "f", msgs(2))
    w = worker(store, clock, {"f": dst})
    w.run_once()
    states = sorted(r["status"] for r in rows(store))
    assert states == ["failed", "sent"]
    assert "internal error: ZeroDivisionError" in next(r["last_error"] for r in rows(store) if r["status"] == "failed")


def test_throttle_answer_blocks_the_destination_without_using_attempts(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("dingtalk_robot", transport=httpx.MockTransport(fake.handler), kv=store)
    # someone else (another tool on the same robot) already used the minute: DingTalk blocks for 10 min
    for _ in range(21):
        fake._over("dingtalk_robot", 20, 60, block=600)
    put(store, clock, "robot", msgs(3))
    w = worker(store, clock, {"robot": dst})
    w.run_once()
    assert fake.codes["dingtalk_robot:130101"] == 1
    assert {r["status"] for r in rows(store)} == {"failed", "pending"} or {r["status"] for r in rows(store)} == {
        "failed"
    }
    assert all(r["attempts"] == 0 for r in rows(store))
    clock.advance(seconds=300)
    assert w.run_once().calls == 0  # still blocked: nothing sent, nothing claimed for sending
    clock.advance(seconds=301)
    run_until_done(w, clock, store=store)
    assert fake.codes["dingtalk_robot:130101"] == 1
    text = "".join(str(a.body) for a in fake.accepted)
    assert all(f"token-m-{i}-end" in text for i in range(3))


@pytest.mark.parametrize("size", [40, 3000])
def test_burst_of_200_to_one_dingtalk_robot_stays_under_20_a_minute_and_arrives_in_digests(
    size: int, store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("dingtalk_robot", transport=httpx.MockTransport(fake.handler), kv=store)
    put(store, clock, "robot", msgs(200, size=size))
    pumps = run_until_done(worker(store, clock, {"robot": dst}), clock, step=1.0, store=store)
    assert fake.codes["dingtalk_robot:130101"] == 0, "the robot was blocked"
    assert fake.max_in_window("dingtalk_robot", 60) <= 20
    texts = [a.body.get("markdown", a.body.get("actionCard", {})).get("text", "") for a in fake.accepted]
    joined = "\n".join(texts)
    missing = [i for i in range(200) if f"token-m-{i}-end" not in joined]
    assert missing == []
    assert all(len(t.encode()) <= 18000 for t in texts)
    assert len(fake.accepted) < 200  # digests, not 200 messages
    assert {r["status"] for r in rows(store)} == {"sent"}
    if size > 1000:
        assert len(fake.accepted) > 20 and pumps > 60  # more digests than one minute allows: the window was waited out


def test_failed_digest_is_retried_with_the_same_members_and_key(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("wecom_robot", transport=httpx.MockTransport(fake.handler), kv=store)
    for _ in range(19):  # leave one slot in this minute
        fake._over("wecom_robot", 20, 60)
    w = worker(store, clock, {"robot": dst})
    from hub.features.delivery.budgets import buckets_for

    with store.begin() as conn:
        w.budgets.take(conn, buckets_for("robot", dst.rate_limits), 19, clock())
    put(store, clock, "robot", msgs(30))
    fake.fail_next = 1
    w.run_once()
    with store.connect() as conn:
        members = conn.execute(select(outbox_batches.c.batch_key)).scalars().all()
    assert len(members) == 30 and len(set(members)) == 1
    clock.advance(seconds=61)
    run_until_done(w, clock, store=store)
    assert len(fake.accepted) == 1
    key = fake.accepted[0].key
    assert key is not None and key.startswith("digest:")
    assert {r["attempts"] for r in rows(store)} == {2}  # one failed attempt, then the same digest again
    with store.connect() as conn:
        assert conn.execute(select(outbox_batches)).all() == []
    assert all(key[len("digest:") :] in r["receipt"] for r in rows(store))


def test_wecom_app_budget_is_per_member(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    dst = make_destination("wecom_app", transport=httpx.MockTransport(fake.handler), kv=store)
    put(store, clock, "app", msgs(40, to=["busy"], prefix="busy") + msgs(5, to=["calm"], prefix="calm"))
    w = worker(store, clock, {"app": dst}, batch_size=100)
    w.run_once()
    sent = {r["key"] for r in rows(store) if r["status"] == "sent"}
    assert len([k for k in sent if k.startswith("busy")]) == 30
    assert len([k for k in sent if k.startswith("calm")]) == 5
    run_until_done(w, clock, store=store)
    assert fake.codes["wecom_app:45009"] == 0
    assert sum(fake.keys().values()) == 45
    # the buckets are per recipient, but no recipient is stored as a bucket's name
    from hub.outbox.tables import delivery_buckets, delivery_sends

    with store.connect() as conn:
        names = {
            *conn.execute(select(delivery_buckets.c.bucket)).scalars(),
            *conn.execute(select(delivery_sends.c.bucket)).scalars(),
        }
    per_member = {n for n in names if n.startswith("app|")}
    assert len(per_member) >= 2 and not any("busy" in n or "calm" in n for n in names), names


def test_personal_data_is_masked_for_staff_not_for_customers(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    staff = make_destination("feishu_bot", transport=httpx.MockTransport(fake.handler), kv=store)
    raw = make_destination(
        "feishu_bot", transport=httpx.MockTransport(fake.handler), kv=store, mask_personal_data=False
    )
    sms = make_destination("sms", transport=httpx.MockTransport(fake.handler), kv=store)
    text = "顾客 13812345678 投诉"
    put(store, clock, "staff", [OutboundMessage(key="s", title=text, body=text)])
    put(store, clock, "raw", [OutboundMessage(key="r", title=text, body=text)])
    put(
        store,
        clock,
        "sms",
        [OutboundMessage(key="c", title="", body="", to=["13812345678"], data={"phone": "13812345678"})],
    )
    worker(store, clock, {"staff": staff, "raw": raw, "sms": sms}).run_once()
    by_key = {a.key: str(a.body) for a in fake.accepted}
    assert "138****5678" in by_key["s"] and "13812345678" not in by_key["s"]
    assert "13812345678" in by_key["r"]
    assert "13812345678" in by_key["c"]  # the customer's own number, to reach them


def test_crash_mid_send_is_picked_up_after_the_lease_without_loss_or_duplicate(
    store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    """Worker A dies right after the platform accepted message 3 (before recording it)."""

    class Crash(BaseException):
        pass

    real = make_destination("feishu_app", transport=httpx.MockTransport(fake.handler), kv=store)

    class Dies(Destination):
        kind = "dies"
        title = "dies after the third platform call"
        rate_limits = real.rate_limits

        def __init__(self) -> None:
            super().__init__("d", real.options)
            self.calls = 0

        def send(self, message: OutboundMessage) -> Receipt:
            self.calls += 1
            receipt = real.send(message)
            if self.calls == 3:
                raise Crash()
            return receipt

    put(store, clock, "app", msgs(8, to=["ou_1"]))
    a = worker(store, clock, {"app": Dies()}, worker_id="A", lease_seconds=60, concurrency=1)
    with pytest.raises(Crash):
        a.run_once()
    assert [r["status"] for r in rows(store)].count("sending") == 6
    b = worker(store, clock, {"app": real}, worker_id="B", lease_seconds=60)
    assert b.run_once().claimed == 0  # A's lease still holds
    clock.advance(seconds=61)
    run_until_done(b, clock, store=store)
    assert {r["status"] for r in rows(store)} == {"sent"}
    assert fake.keys() == {f"m-{i}": 1 for i in range(8)}  # Feishu's uuid absorbed the resend of m-2
    assert fake.requests["feishu_app"] == 9


@pytest.mark.postgres
def test_two_workers_share_postgres_without_sending_anything_twice(
    pg_store: Store, clock: FakeClock, fake: FakePlatform, make_destination: DestinationFactory
) -> None:
    put(pg_store, clock, "app", msgs(300, to=["ou_1"]))
    fake.feishu_app_per_second = 10**6  # the fake clock does not move here: lift the platform limit
    done = threading.Event()

    def run(name: str) -> None:
        dst = make_destination("feishu_app", transport=httpx.MockTransport(fake.handler), kv=pg_store)
        dst.rate_limits = ()  # type: ignore[misc]
        w = worker(pg_store, clock, {"app": dst}, worker_id=name, batch_size=10)
        while not done.is_set() and w.run_once():
            pass

    threads = [threading.Thread(target=run, args=(n,)) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    assert fake.requests["feishu_app"] == 300  # no row was claimed by both
    assert fake.keys() == {f"m-{i}": 1 for i in range(300)}
    assert {r["status"] for r in rows(pg_store)} == {"sent"}


@pytest.mark.postgres
def test_token_is_fetched_by_one_process_at_a_time(pg_store: Store, clock: FakeClock, fake: FakePlatform) -> None:
    from hub.sdk.tokens import TokenCache

    calls: list[bool] = []
    barrier = threading.Barrier(6)

    def fetch(force: bool) -> tuple[str, float]:
        calls.append(force)
        import time

        time.sleep(0.2)  # a slow platform: everyone else is waiting on the lock meanwhile
        return f"tok-{len(calls)}", 7200

    got: list[str] = []

    def use() -> None:
        barrier.wait()
        got.append(TokenCache(pg_store, "wx", fetch, clock=clock).get())

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [False] and set(got) == {"tok-1"}
    # two workers see the token refused at once: only one forces a refresh
    stale = got[0]
    results: list[str] = []

    def refuse() -> None:
        barrier.wait()
        results.append(TokenCache(pg_store, "wx", fetch, clock=clock).invalidate(stale))

    barrier.reset()
    threads = [threading.Thread(target=refuse) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [False, True] and set(results) == {"tok-2"}


def test_the_feature_runs_inside_cxhub_run(tmp_path: Any, fake: FakePlatform, clock: FakeClock) -> None:
    from kit.runtime import build_runtime

    from hub.features.delivery.worker import DeliveryService

    rt = build_runtime(
        f"""
secret_key: test-secret-key
store: {{url: "sqlite:///{tmp_path}/hub.db"}}
destinations:
  staff:
    connector: feishu_app
    options: {{app_id: cli_test, app_secret: app-secret, base_url: "http://fake"}}
  paused:
    connector: feishu_app
    enabled: false
    options: {{app_id: cli_x, app_secret: app-secret}}
""",
        transport=httpx.MockTransport(fake.handler),
    )
    services = [s for s in rt.services if isinstance(s, DeliveryService)]
    assert len(services) == 1 and services[0].worker.destinations == ["staff"]
    services[0].poll_seconds = 0.05
    put(rt.store, clock, "staff", msgs(3, to=["ou_1"]))
    services[0].start()
    try:
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(fake.accepted) < 3:
            time.sleep(0.05)
    finally:
        services[0].stop()
        rt.close()
    assert fake.keys() == {"m-0": 1, "m-1": 1, "m-2": 1}


Factory = Callable[..., Destination]


def test_a_setting_changed_on_the_worker_reaches_every_step(store: Store, clock: FakeClock) -> None:
    w = worker(store, clock, {})
    w.batch_size, w.policy = 7, FAST
    assert w.claims.batch_size == 7 and w.sender.policy is FAST and w.recorder.worker_id == w.worker_id
