"""Review presets end to end: run_sync against local fake Taobao / JD / Dianping servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from kit.pull import RuntimeFactory
from kit.review_fakes import CN, FakeDianping, FakeJd, FakePlatform, FakeTaobao
from sqlalchemy import select

from connectors.http_feed import HttpFeedSource
from hub.errors import PermanentError
from hub.sdk.testing import ConnectorConformance, FakeClock
from hub.store.cursors import load_state
from hub.store.schema import touchpoints
from hub.sync import SyncRetry, run_sync

CREDS = {"app_key": "12345678", "app_secret": "s3cr3t", "session": "sess-ok"}


class TestTaobaoConformance(ConnectorConformance):
    connector_kind = "taobao_reviews"
    options = CREDS


class TestJdConformance(ConnectorConformance):
    connector_kind = "jd_reviews"
    options = CREDS


class TestDianpingConformance(ConnectorConformance):
    connector_kind = "dianping_reviews"
    options = {**CREDS, "shops": ["s1"]}


@pytest.fixture
def fakes() -> Iterator[list[FakePlatform]]:
    made: list[FakePlatform] = []
    yield made
    for f in made:
        f.close()


def _start(kind: type[FakePlatform], clock: FakeClock, fakes: list[FakePlatform]) -> Any:
    fake = kind()
    fake.now = lambda: clock().astimezone(CN)
    fakes.append(fake)
    return fake


def _runtime(make_runtime: RuntimeFactory, clock: FakeClock, connector: str, fake: FakePlatform, **options: Any) -> Any:
    opts = {**CREDS, "base_url": fake.url, "lag": 0, "overlap": "1h", "rate_limit": 1000, **options}
    return make_runtime({"reviews": {"connector": connector, "options": opts}}, clock=clock)


def _source(rt: Any, waits: list[float]) -> HttpFeedSource:
    src = rt.pull_source("reviews")
    assert isinstance(src, HttpFeedSource)
    src.sleep = waits.append  # type: ignore[method-assign]
    return src


def _docs(rt: Any) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(touchpoints.c.doc))]


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_taobao_signed_windows_and_incremental(
    sign_method: str, make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]
) -> None:
    fake: FakeTaobao = _start(FakeTaobao, clock, fakes)
    fake.add(30, clock() - timedelta(days=3), timedelta(hours=2))
    rt = _runtime(make_runtime, clock, "taobao_reviews", fakes[-1], sign_method=sign_method, initial="4d", page_size=7)
    waits: list[float] = []
    _source(rt, waits)
    r = run_sync(rt, "reviews")
    assert (r.read, r.stored, r.quarantined) == (30, 30, 0)
    assert all(c["sign_method"] == sign_method for c in fake.calls)
    docs = _docs(rt)
    assert {d["feedback"]["rating"] for d in docs} == {"1", "3", "5"}
    assert all(d["feedback"]["rating_scale"] == 5 and d["channel"] == "taobao" for d in docs)
    assert load_state(rt.store, "reviews") == {"until": clock().isoformat()}
    # an hour later: two new reviews; the overlap re-reads the last hour, dedup absorbs it
    clock.advance(hours=1)
    fake.add(2, clock() - timedelta(minutes=30), timedelta(minutes=1))
    r2 = run_sync(rt, "reviews")
    assert r2.stored == 2 and r2.read == r2.stored + r2.duplicates
    assert waits == []


def test_taobao_page_limit_slices_the_date_range(
    make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]
) -> None:
    fake: FakeTaobao = _start(FakeTaobao, clock, fakes)
    fake.MAX_PAGE = 20  # the real limit is 200; a smaller one keeps the test quick
    fake.add(95, clock() - timedelta(hours=20), timedelta(minutes=10))
    rt = _runtime(make_runtime, clock, "taobao_reviews", fakes[-1], initial="1d", page_size=2)
    src = _source(rt, [])
    src.options.pagination.max_page = 20
    r = run_sync(rt, "reviews")
    assert r.stored == 95
    assert max(int(c["page_no"]) for c in fake.calls) == 20  # never asked past the limit
    assert len({(c["start_date"], c["end_date"]) for c in fake.calls}) > 2  # the window was split


def test_taobao_throttling_backs_off(make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]) -> None:
    fake: FakeTaobao = _start(FakeTaobao, clock, fakes)
    fake.add(20, clock() - timedelta(hours=10), timedelta(minutes=20))
    fake.throttle_every = 3
    rt = _runtime(make_runtime, clock, "taobao_reviews", fakes[-1], initial="1d", page_size=5)
    waits: list[float] = []
    _source(rt, waits)
    assert run_sync(rt, "reviews").stored == 20
    assert waits and all(w == 1.0 for w in waits)  # "This ban will last for 1 more seconds"


@pytest.mark.parametrize(
    ("change", "code"),
    [({"session": "expired"}, "code 27"), ({"app_secret": "wrong"}, "code 25"), ({"app_key": "999"}, "code 29")],
)
def test_taobao_auth_errors_are_fatal_and_clear(
    change: dict[str, str], code: str, make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]
) -> None:
    _start(FakeTaobao, clock, fakes)
    rt = _runtime(make_runtime, clock, "taobao_reviews", fakes[-1], initial="1d", **change)
    waits: list[float] = []
    _source(rt, waits)
    with pytest.raises(PermanentError) as info:
        run_sync(rt, "reviews", sleep=waits.append)
    msg = str(info.value)
    assert "authorisation failed" in msg and code in msg and "session" in msg
    assert "wrong" not in msg and "expired" not in msg.split("(")[0]
    assert waits == []


def test_outage_longer_than_the_retries_resumes_from_the_last_window(
    make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]
) -> None:
    fake: FakeTaobao = _start(FakeTaobao, clock, fakes)
    fake.add(40, clock() - timedelta(days=2), timedelta(hours=1))
    rt = _runtime(make_runtime, clock, "taobao_reviews", fakes[-1], initial="2d", span="12h", page_size=5, retries=2)
    waits: list[float] = []
    src = _source(rt, waits)
    calls_before: list[int] = []

    def on_batch(read: int, total: int | None) -> None:
        if read >= 10 and not calls_before:  # mid-sync: the API goes down for 5 calls, then 429s once
            calls_before.append(len(fake.calls))
            fake.fail_next = [503, 503, 503, 503, 503, 429]

    r = run_sync(rt, "reviews", on_batch=on_batch, retry=SyncRetry(attempts=5, base=3), sleep=waits.append)
    assert r.stored == 40 and len(_docs(rt)) == 40
    assert 3 in waits and 6 in waits  # run_sync's own backoff between passes
    assert 2.0 in waits  # Retry-After: 2 of the 429
    assert src.requests > calls_before[0]


def test_jd_comments(make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]) -> None:
    fake: FakeJd = _start(FakeJd, clock, fakes)
    fake.add(60, clock() - timedelta(days=1), timedelta(minutes=20))
    fake.throttle_every = 2
    rt = _runtime(make_runtime, clock, "jd_reviews", fakes[-1], initial="2d", page_size=50, score=0)
    waits: list[float] = []
    _source(rt, waits)
    r = run_sync(rt, "reviews")
    assert r.stored == 60 and waits  # throttled (code 61) and backed off
    import json

    biz = json.loads(fake.calls[0]["360buy_param_json"])
    assert biz["pageSize"] == 50 and biz["score"] == 0 and "beginTime" in biz
    docs = _docs(rt)
    assert {d["feedback"]["rating"] for d in docs} == {"1", "2", "3", "4", "5"}
    assert all(d["customer"]["identities"][0]["namespace"] == "jd_pin" for d in docs)


def test_jd_invalid_token(make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]) -> None:
    _start(FakeJd, clock, fakes)
    rt = _runtime(make_runtime, clock, "jd_reviews", fakes[-1], initial="1d", session="old-token")
    with pytest.raises(PermanentError, match=r"authorisation failed \(code 19: access_token无效\)"):
        run_sync(rt, "reviews")


def test_dianping_shops_offset_paging(
    make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]
) -> None:
    fake: FakeDianping = _start(FakeDianping, clock, fakes)
    fake.add(23, clock() - timedelta(hours=20), timedelta(minutes=30), shop="shopA")
    fake.add(7, clock() - timedelta(hours=20), timedelta(minutes=30), shop="shopB")
    fake.throttle_every = 3
    rt = _runtime(
        make_runtime, clock, "dianping_reviews", fakes[-1], initial="1d", shops=["shopA", "shopB"], page_size=10
    )
    waits: list[float] = []
    _source(rt, waits)
    r = run_sync(rt, "reviews")
    assert r.stored == 30 and waits
    docs = _docs(rt)
    assert sorted({d["org"]["store"] for d in docs}) == ["shopA", "shopB"]
    assert all(d["feedback"]["rating_scale"] == 50 for d in docs)
    offsets = sorted({int(c["offset"]) for c in fake.calls if c.get("open_shop_uuid") == "shopA"})
    assert offsets == [0, 10, 20]


def test_dianping_expired_session(make_runtime: RuntimeFactory, clock: FakeClock, fakes: list[FakePlatform]) -> None:
    _start(FakeDianping, clock, fakes)
    rt = _runtime(make_runtime, clock, "dianping_reviews", fakes[-1], initial="1d", shops=["s"], session="old")
    with pytest.raises(PermanentError, match="authorisation failed"):
        run_sync(rt, "reviews")
