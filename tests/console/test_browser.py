"""The console in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, via Selenium),
against a real server (uvicorn on a free port) on a SQLite store.

The scenario a store manager lives: sign in through the form, watch the cases board, a signed
negative review arrives on the webhook and its case appears without a reload (server-sent events),
acknowledge it and see its clock stop; a manager of another store cannot open that case. Then the
main pages are photographed at 1280x800 into docs/console/ from a populated store, with the Chinese
drawn by a CJK font.

``tests/setup_browser.sh`` installs the browser. Under ``CI=true`` a missing browser fails; locally
these tests skip loudly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kit.browser import cjk_drawn_by
from kit.console import PASSWORD, ConsoleKit, console_config
from kit.peers import standard_webhook
from kit.runtime import build_runtime

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,800",
)
#: where the screenshots go: a temporary folder, or (to refresh the docs' pictures)
#: ``CXHUB_SCREENSHOTS=docs/console pytest tests/console/test_browser.py -k screenshots``
SHOTS_ENV = "CXHUB_SCREENSHOTS"
SECRET = console_config("sqlite://")["sources"]["reviews"]["options"]["secret"]


def _missing(what: str) -> None:
    msg = f"{what}; run `bash tests/setup_browser.sh`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {msg}")
    pytest.skip(f"SKIPPED LOUDLY: {msg}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[dev]')")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not os.path.exists(CHROMIUM) or not os.path.exists(driver_path):
        _missing(f"headless Chromium not found ({CHROMIUM}, {driver_path})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    # Selenium Manager must never download a browser or driver: the paths are given
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    # the viewport itself 1280x800 (the window's size includes what headless Chromium reserves)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ConsoleKit, str]]:
    """A hub with the kit's org on SQLite, served by uvicorn in a thread (real clock: the webhook's
    signature carries the time); yields (kit, base url)."""
    import uvicorn

    from hub.web import create_app

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = console_config(f"sqlite:///{tmp_path / 'console.db'}", extra={"server": {"public_url": base}})
    rt = build_runtime(cfg, path=tmp_path / "cxhub.yaml")
    kit = ConsoleKit(rt)
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield kit, base
    finally:
        server.should_exit = True
        thread.join(10)
        rt.close()


def sign_in(browser: Any, base: str, login: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{base}/console/login")
    browser.find_element(By.NAME, "login").send_keys(login)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button, form [type=submit]").click()
    wait_for(lambda: "/console/login" not in browser.current_url, "the sign-in to finish")


def wait_for(check: Any, what: str, seconds: float = 8.0) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # the element is being swapped by htmx
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def post_review(
    base: str,
    n: int,
    *,
    store: str = "S001",
    text: str = "牛奶是坏的，店员态度很差",
    rating: int = 1,
    minutes_ago: float = 0,
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    body = json.dumps(
        {
            "review_id": f"live-{store}-{n}",
            "created_at": at.isoformat(timespec="seconds"),
            "platform": "meituan",
            "store_code": store,
            "order_id": f"L-{n}",
            "rating": rating,
            "content": text,
            "member_no": f"LM{n}",
        },
        ensure_ascii=False,
    ).encode()
    headers = standard_webhook(body, secret=SECRET, msg_id=f"msg-{store}-{n}", ts=int(time.time()))
    r = httpx.post(f"{base}/hooks/reviews", content=body, headers=headers, timeout=10)
    assert r.status_code < 300, (r.status_code, r.text)


def test_a_case_arrives_live_is_acknowledged_and_stays_in_its_store(
    browser: Any, served: tuple[ConsoleKit, str]
) -> None:
    from selenium.webdriver.common.by import By

    kit, base = served
    manager = kit.add_user("store_manager", "S001", login="xuhui")
    other = kit.add_user("store_manager", "S002", login="jingan")
    sign_in(browser, base, manager)
    browser.get(f"{base}/console/cases")
    assert browser.find_element(By.TAG_NAME, "h1").text
    rows_before = len(browser.find_elements(By.CSS_SELECTOR, "tr[id^=case-row-]"))
    # a connected page: the event stream is open before the review arrives
    time.sleep(1.0)
    sent = time.monotonic()
    post_review(base, 1, text="冰柜坏了，酸奶全是温的，店员态度很差")
    row = wait_for(
        lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, "tr[id^=case-row-]") if "酸奶" in e.text],
        "the new case on the board without a reload",
        seconds=10,
    )[0]
    arrived = time.monotonic() - sent
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr[id^=case-row-]")) == rows_before + 1
    assert arrived < 5, f"the case took {arrived:.1f} s to appear"
    case_id = row.get_attribute("id").removeprefix("case-row-")
    clock = row.find_element(By.CSS_SELECTOR, "time[data-deadline]")
    assert clock.get_attribute("data-start")
    row.find_element(By.CSS_SELECTOR, "button.primary").click()
    wait_for(
        lambda: browser.find_element(By.ID, f"case-row-{case_id}").get_attribute("data-status") == "acknowledged",
        "the case to be acknowledged",
    )
    browser.get(f"{base}/console/cases/{case_id}")
    stopped = browser.find_elements(By.CSS_SELECTOR, "time[data-stopped]")
    assert stopped, "the acknowledge clock did not stop on the case page"
    assert "xuhui" in browser.page_source
    # another store's manager: the case's URL is refused
    sign_in(browser, base, other)
    browser.get(f"{base}/console/cases/{case_id}")
    assert "酸奶" not in browser.page_source
    status = httpx.get(
        f"{base}/console/cases/{case_id}",
        cookies={c["name"]: c["value"] for c in browser.get_cookies()},
        follow_redirects=False,
    ).status_code
    assert status == 403


def _populate(kit: ConsoleKit, base: str) -> None:
    texts = [
        ("S001", 1, "牛奶过期了还在卖，店员态度很差"),
        ("S001", 2, "排队太久，收银只开了一个"),
        ("S002", 1, "面包发霉，要求退款没人理"),
        ("S003", 2, "外卖送错了，打电话也没人接"),
        ("S101", 1, "冷柜温度不够，冰淇淋化了"),
        ("S001", 5, "店员很热情，水果新鲜"),
        ("S002", 4, "整体不错，就是停车不方便"),
    ]
    more = ["很满意，下次还来", "价格有点贵", "店员很耐心", "蔬菜不太新鲜", "环境干净", "找零找错了"]
    texts += [(store, 2 + (i % 4), more[i % len(more)]) for i, store in enumerate(["S001", "S002", "S003", "S101"] * 6)]
    for i, (store, rating, text) in enumerate(texts):
        post_review(base, 100 + i, store=store, text=text, rating=rating, minutes_ago=(i * 53) % 1400)


def test_screenshots_of_the_main_pages(browser: Any, served: tuple[ConsoleKit, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from sqlalchemy import select

    from hub.features.feedback.schema import cases

    kit, base = served
    _populate(kit, base)
    admin = kit.add_user("admin", login="hq-admin")
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.delete_all_cookies()
    browser.get(f"{base}/console/login")
    cjk_drawn_by(browser, "label", browser.find_element(By.TAG_NAME, "label").text)
    browser.save_screenshot(str(shots / "login.png"))
    sign_in(browser, base, admin)
    with kit.rt.store.connect() as conn:
        case_id, customer_id = conn.execute(
            select(cases.c.id, cases.c.customer_id).where(cases.c.store == "S001").order_by(cases.c.id)
        ).first() or (None, None)
    pages = {
        "overview": "/console/",
        "cases": "/console/cases",
        "case": f"/console/cases/{case_id}",
        "surveys": "/console/surveys",
        "connectors": "/console/connectors",
        "customer": f"/console/customers/{customer_id}",
    }
    taken = []
    for name, path in pages.items():
        browser.get(base + path)
        time.sleep(1.0)  # tiles and charts load on their own
        heading = browser.find_elements(By.TAG_NAME, "h1")
        assert "404" not in browser.title and heading, (name, browser.title)
        cjk_drawn_by(browser, "nav", browser.find_element(By.TAG_NAME, "nav").text)
        browser.save_screenshot(str(shots / f"{name}.png"))
        taken.append(name)
    assert taken == list(pages), taken
    assert all((shots / f"{name}.png").stat().st_size > 6_000 for name in ["login", *taken])  # drawn, not blank
