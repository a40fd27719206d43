"""The survey page in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, via Selenium).

``tests/setup_browser.sh`` installs them (``make pytest`` runs it). Under ``CI=true`` a missing
browser fails; locally these tests skip loudly.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kit.surveys import checkout, ingest, invitations_of, outbox_of
from sqlalchemy import select

from hub.store.schema import touchpoints

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=390,844",  # a phone
)


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
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(make_runtime: Any, clock: Any) -> Iterator[tuple[Any, str]]:
    """A runtime whose app serves on 127.0.0.1 (uvicorn in a thread); yields (runtime, base url)."""
    import uvicorn

    from hub.web import create_app

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    rt = make_runtime(public_url=base)
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield rt, base
    finally:
        server.should_exit = True
        thread.join(10)


def test_open_answer_submit_stores_the_response(browser: Any, served: tuple[Any, str]) -> None:
    from selenium.webdriver.common.by import By

    rt, base = served
    ingest(rt, checkout("R1"))
    link = outbox_of(rt)[0]["message"]["url"]
    assert link.startswith(base + "/s/")
    browser.get(link)
    assert "感谢您光临徐汇店" in browser.find_element(By.TAG_NAME, "h1").text
    blocks = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".block-title")]
    assert blocks == ["乳制品", "生鲜"]
    # submit with nothing chosen: the server answers with the problems, in the page
    submit(browser)
    assert "还有" in browser.find_element(By.ID, "form-errors").text
    assert browser.find_element(By.ID, "err-nps").text == "请选择一个分数"
    # answer as a customer would: tap the chips and options (labels: the inputs are visually hidden)
    for field, value in [
        ("q_nps", "3"),
        ("q_overall", "2"),
        ("q_dairy_freshness", "1"),
        ("q_fresh_quality", "4"),
    ]:
        browser.find_element(By.CSS_SELECTOR, f"label:has(input[name='{field}'][value='{value}'])").click()
    browser.find_element(By.CSS_SELECTOR, "label:has(input[name='q_dairy_cold_chain'][value='不够冷'])").click()
    browser.find_element(By.CSS_SELECTOR, "label:has(input[name='q_fresh_issue'][value='价格偏高'])").click()
    browser.find_element(By.NAME, "q_comment").send_keys("牛奶不够冷")
    submit(browser)
    message = browser.find_element(By.ID, "message")
    assert message.get_attribute("data-kind") == "thanks"
    assert "提交成功" in message.text
    with rt.store.connect() as conn:
        [doc] = [r[0] for r in conn.execute(select(touchpoints.c.doc).where(touchpoints.c.kind == "survey_response"))]
    [inv] = invitations_of(rt)
    assert doc["feedback"]["nps"] == 3 and doc["feedback"]["text"] == "牛奶不够冷"
    assert doc["attributes"]["transaction_id"] == inv["transaction_id"]
    assert doc["customer"]["customer_id"] == inv["customer_id"]
    answers = {a["id"]: a["value"] for a in doc["attributes"]["answers"]}
    assert answers["fresh_issue"] == ["价格偏高"] and answers["dairy_cold_chain"] == "不够冷"
    assert inv["status"] == "responded"
    # the link is single use
    browser.get(link)
    assert browser.find_element(By.ID, "message").get_attribute("data-kind") == "used"


def submit(browser: Any) -> None:
    """Click submit and wait for the server's answer page: a click does not wait for the
    navigation it starts, so on a busy machine the next lookup could still see the old page."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "submit").click()

    def old_page_gone(_: Any) -> bool:
        # Selenium's staleness_of expects StaleElementReferenceException; mid-navigation Chromium
        # may instead answer "Node with given id does not belong to the document" (seen in CI).
        # Either way the old page is gone.
        try:
            old.is_enabled()
        except WebDriverException:  # StaleElementReferenceException is one too
            return True
        return False

    WebDriverWait(browser, 30).until(old_page_gone)
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")


def test_tampered_link_is_refused(browser: Any, served: tuple[Any, str]) -> None:
    from selenium.webdriver.common.by import By

    rt, _ = served
    ingest(rt, checkout("R1"))
    link = outbox_of(rt)[0]["message"]["url"]
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    browser.get(tampered)
    message = browser.find_element(By.ID, "message")
    assert message.get_attribute("data-kind") == "tampered"
    assert "链接无效" in message.text
    assert not browser.find_elements(By.TAG_NAME, "form")


def test_what_the_customer_sees_on_a_phone(browser: Any, served: tuple[Any, str], clock: Any) -> None:
    """At 390 px: the store's name as the brand (no `page.brand_name` set: never "cxhub"), the
    0-10 scale on one row, "没有遇到问题" exclusive, and "already submitted" and "expired" each with
    their own icon."""

    rt, _ = served
    ingest(rt, checkout("R1"), checkout("R2", member="M2", phone="13900001111"))
    first, second = (m["message"]["url"] for m in outbox_of(rt))
    # headless Chromium will not make its window narrower than 500 px: emulate the phone's screen
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True}
    )
    try:
        _phone_checks(browser, first, second, clock)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _phone_checks(browser: Any, first: str, second: str, clock: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(first)
    brand = browser.find_element(By.CSS_SELECTOR, ".brand").text
    assert brand == "徐汇店" and "cxhub" not in browser.title and "cxhub" not in browser.page_source
    assert browser.execute_script("return document.documentElement.clientWidth") == 390
    chips = browser.find_elements(By.CSS_SELECTOR, "#card-nps .chip")
    assert len(chips) == 11
    assert len({c.rect["y"] for c in chips}) == 1, [c.rect for c in chips]  # one row
    right = max(c.rect["x"] + c.rect["width"] for c in chips)
    assert right <= browser.execute_script("return document.documentElement.clientWidth")

    def ticked() -> dict[str, bool]:
        boxes = browser.find_elements(By.CSS_SELECTOR, "input[name='q_fresh_issue']")
        return {b.get_attribute("value"): b.is_selected() for b in boxes}

    def tick(value: str) -> None:
        browser.find_element(By.CSS_SELECTOR, f"label:has(input[name='q_fresh_issue'][value='{value}'])").click()

    tick("品种不全")
    tick("价格偏高")
    tick("没有遇到问题")
    assert [v for v, on in ticked().items() if on] == ["没有遇到问题"]
    tick("品种不全")
    assert [v for v, on in ticked().items() if on] == ["品种不全"]
    # without the script (or a hand-made form), the server refuses the combination
    browser.execute_script("document.querySelectorAll(\"input[name='q_fresh_issue']\").forEach(b => b.checked = true)")
    for field, value in [("q_nps", "9"), ("q_overall", "5"), ("q_dairy_freshness", "5"), ("q_fresh_quality", "5")]:
        browser.find_element(By.CSS_SELECTOR, f"label:has(input[name='{field}'][value='{value}'])").click()
    browser.find_element(By.CSS_SELECTOR, "label:has(input[name='q_dairy_cold_chain'][value='合适'])").click()
    submit(browser)
    assert "不能与其他选项同时选择" in browser.find_element(By.ID, "err-fresh_issue").text
    assert all(ticked().values())  # the page comes back with what was sent
    tick("没有遇到问题")  # unticked: the other four together are fine
    assert [v for v, on in ticked().items() if not on] == ["没有遇到问题"]
    submit(browser)
    assert browser.find_element(By.ID, "message").get_attribute("data-kind") == "thanks"

    browser.get(first)  # already submitted
    used = browser.find_element(By.CSS_SELECTOR, "#message .icon").get_attribute("data-icon")
    assert browser.find_element(By.ID, "message").get_attribute("data-kind") == "used"
    clock.advance(days=4)  # the second link expired
    browser.get(second)
    assert browser.find_element(By.ID, "message").get_attribute("data-kind") == "expired"
    expired = browser.find_element(By.CSS_SELECTOR, "#message .icon").get_attribute("data-icon")
    assert used and expired and used != expired
    assert browser.find_element(By.CSS_SELECTOR, "footer").text.startswith("徐汇店")
    browser.save_screenshot(str(_screenshot_dir() / "survey-expired-390px.png"))


def _screenshot_dir() -> Any:
    from pathlib import Path

    path = Path(os.environ.get("CXHUB_SCREENSHOTS", "/tmp/cxhub-screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_chinese_text_is_drawn_by_a_cjk_font(browser: Any, served: tuple[Any, str]) -> None:
    """The page is Chinese first: Chromium must draw its text with a CJK font (tests/setup_browser.sh
    installs Noto Sans CJK), glyph for glyph, not blank boxes that an element check would pass."""
    from kit.browser import cjk_drawn_by
    from selenium.webdriver.common.by import By

    rt, _ = served
    ingest(rt, checkout("R-font"))
    browser.get(outbox_of(rt)[0]["message"]["url"])
    for selector in ("h1", ".brand"):
        text = browser.find_element(By.CSS_SELECTOR, selector).text
        drawn = cjk_drawn_by(browser, selector, text)
        # lang="zh-CN": the Simplified Chinese face, not the Japanese glyph forms of the same characters
        assert any("SC" in family or "Hans" in family for family in drawn), (selector, drawn)
    browser.save_screenshot(str(_screenshot_dir() / "survey-fonts.png"))
