"""What staff read, as they read it: the action page's text (GET / POST through the real app) and the
card texts (the DingTalk robot's JSON body, rendered by the real connector).

Each assertion is a defect staff saw: "已已解决", "高级" read as "advanced", "受理人：链接", two
headings on a DingTalk card, "顾客：顾客", "来源：wechat_template", no category answers, no amount
or items for the order, nothing on the page saying the case is overdue or escalated.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.cases import review_record, write_runtime_config
from kit.runtime import build_runtime
from sqlalchemy import select

from commands.demo import ITEMS, MEMBERS, STORES
from hub.features.feedback.cases import CaseService
from hub.mapping import compile_mapping, resolve_mapping_ref
from hub.outbox.messages import message_from_dict
from hub.registry import get as get_connector
from hub.runtime import Runtime
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from hub.store.schema import outbox
from hub.yamlio import load_yaml


@pytest.fixture
def rt(tmp_path: Path, clock: FakeClock) -> Any:
    runtime = build_runtime(write_runtime_config(tmp_path, robot="http://127.0.0.1:9"), clock=clock)
    yield runtime
    runtime.close()


def mapping(name: str) -> Any:
    data, lines = load_yaml(resolve_mapping_ref(name, Path(".")))
    return compile_mapping(data, lines)


def ingest(rt: Runtime, source: str, mapping_name: str, *records: dict[str, Any]) -> None:
    raws = [
        RawRecord(source, str(r.get("review_id") or r.get("receipt_no") or r.get("invitation_id")), r) for r in records
    ]
    rt.ingestor.ingest(source, mapping(mapping_name), raws)


def checkout(clock: FakeClock) -> dict[str, Any]:
    """The demo's checkout R-00001 of member M0001: milk and spinach, ¥86.50 after a discount."""
    items = [{**ITEMS["milk"], "qty": 3}, {**ITEMS["spinach"], "qty": 2}]
    return {
        "receipt_no": "R-00001",
        "status": "PAID",
        "paid_at": clock().isoformat(),
        "store": STORES["S001"],
        "total": "86.50",
        "items": items,
        "member": {"number": MEMBERS[0]["number"], "level": "金卡"},
    }


def first_message(rt: Runtime) -> Any:
    with rt.store.connect() as conn:
        row = conn.execute(select(outbox.c.message).order_by(outbox.c.id)).first()
    assert row is not None
    return message_from_dict(row[0])


def robot_text(rt: Runtime) -> str:
    """The text of the DingTalk robot card the store group gets (the real connector's body)."""
    cls = get_connector("dingtalk_robot")
    robot = cls("dt_s001", cls.Options.model_validate({"access_token": "t", "base_url": "http://x"}), rt.context)
    body = robot.render(first_message(rt))  # type: ignore[attr-defined]
    return str(body[body["msgtype"]]["text"])


def service(rt: Runtime) -> CaseService:
    return rt.features["feedback"]


# ---------------------------------------------------------------- cards


def test_card_names_the_order_amount_and_items_and_has_one_heading(rt: Runtime, clock: FakeClock) -> None:
    ingest(rt, "pos", "retail_checkout", checkout(clock))
    review = review_record(1, member=MEMBERS[0]["number"])
    review["order_id"] = "R-00001"
    ingest(rt, "reviews", "generic_review", review)
    text = robot_text(rt)
    assert "- **订单**：R-00001 ¥86.50（鲜牛奶 1L、有机菠菜）" in text
    assert text.count("###") == 1 and text.startswith("### 【差评预警·高】徐汇店")
    assert "**工单 #" in text and "严重程度：高" in text
    assert "- **顾客**：会员号 M0001" in text
    assert "顾客：顾客" not in text.replace("*", "")


def test_a_customer_known_only_by_a_hashed_phone_is_not_called_customer(rt: Runtime) -> None:
    review = review_record(1)
    del review["member_no"]
    review["mobile"] = "13812345678"
    ingest(rt, "reviews", "generic_review", review)
    text = robot_text(rt).replace("*", "")
    assert "顾客：顾客" not in text and "13812345678" not in text
    assert "- 顾客：已识别顾客（无可显示的信息）" in text


def test_survey_answer_card_shows_category_scores_and_channel_in_chinese(rt: Runtime, clock: FakeClock) -> None:
    answer = {
        "invitation_id": "inv-1",
        "transaction_id": "tx-1",
        "rule": "after_checkout",
        "questionnaire": "retail",
        "customer_id": "5a4b3c2d-0000-4000-8000-000000000003",
        "channel": "wechat_template",
        "store": "S001",
        "store_name": "徐汇店",
        "submitted_at": clock().isoformat(),
        "nps": 2,
        "text": "菠菜不新鲜",
        "blocks": ["fresh", "dairy"],
        "answers": [
            {"id": "nps", "type": "nps", "value": 2},
            {"id": "fresh_quality", "type": "csat", "value": 2, "block": "fresh", "block_title": "生鲜"},
            {"id": "dairy_freshness", "type": "csat", "value": 4, "block": "dairy", "block_title": "乳制品"},
            # a row without its block's title: the question, never the block id
            {"id": "bakery_taste", "type": "rating", "value": 3, "block": "bakery", "text": "请为所购烘焙的口感打分"},
        ],
    }
    ingest(rt, "survey", "survey_page", answer)
    text = robot_text(rt).replace("*", "")
    assert "- 分项：生鲜 2/5、乳制品 4/5、请为所购烘焙的口感打分 3/5" in text and "bakery" not in text
    assert "- 来源：微信问卷 · " in text and "wechat_template" not in text
    assert "顾客：顾客" not in text


# ---------------------------------------------------------------- the action page


def ack_path(rt: Runtime, action: str = "ack") -> str:
    msg = first_message(rt)
    url = next(b.url for b in msg.buttons if f"/{action}?" in b.url)
    return url.replace(rt.config.raw.server.public_url, "")


def form_token(html: str) -> str:
    return re.search(r'name="t" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_page_says_severity_and_never_doubles_yi(rt: Runtime) -> None:
    ingest(rt, "reviews", "generic_review", review_record(1))
    client = TestClient(create_app_for(rt))
    page = client.get(ack_path(rt)).text
    assert "严重程度：高" in page and "高级" not in page
    path = ack_path(rt, "resolve")
    done = client.post(path.split("?")[0], data={"t": form_token(client.get(path).text), "by": "张店长"}).text
    assert "已解决" in done and "已已" not in done
    again = client.get(path).text
    assert "此工单已解决" in again and "已已" not in again
    assert "此工单已解决，无需重复操作" in client.post(path.split("?")[0], data={"t": path.partition("?t=")[2]}).text


def test_link_acknowledge_requires_a_name(rt: Runtime, clock: FakeClock) -> None:
    ingest(rt, "reviews", "generic_review", review_record(1))
    client = TestClient(create_app_for(rt))
    path = ack_path(rt)
    page = client.get(path).text
    assert "您的姓名（必填" in page and "required" in page
    for by in ("", "   "):
        r = client.post(path.split("?")[0], data={"t": form_token(page), "by": by})
        assert r.status_code == 422 and "请填写您的姓名" in r.text
    case = service(rt).list()[0]
    assert case["status"] == "new" and case["acknowledged_by"] is None
    r = client.post(path.split("?")[0], data={"t": form_token(page), "by": " 王  店长 "})
    case = service(rt).get(case["id"])
    assert (case["status"], case["acknowledged_by"], case["acknowledged_at"]) == ("acknowledged", "王 店长", clock())
    assert "受理人" in r.text and "王 店长" in r.text and "链接" not in r.text


def test_link_marks_not_negative_with_a_name_and_teaches_the_model(rt: Runtime, clock: FakeClock) -> None:
    from sqlalchemy import select

    from hub.features.feedback.verdicts import feedback_labels

    ingest(rt, "reviews", "generic_review", review_record(1))
    client = TestClient(create_app_for(rt))
    path = ack_path(rt, "not_negative")
    page = client.get(path).text
    assert "标记不是差评" in page
    r = client.post(path.split("?")[0], data={"t": form_token(page), "by": "李主管"})
    assert r.status_code == 200 and "已标记为不是差评" in r.text
    case = service(rt).list()[0]
    assert (case["status"], case["resolved_by"]) == ("resolved", "李主管")
    with rt.store.connect() as conn:
        [label] = conn.execute(select(feedback_labels)).mappings().all()
    assert (label["verdict"], label["actor"], label["via"]) == ("not_negative", "李主管", "link")


def test_page_shows_overdue_and_escalated(rt: Runtime, clock: FakeClock) -> None:
    ingest(rt, "reviews", "generic_review", review_record(1))
    client = TestClient(create_app_for(rt))
    path = ack_path(rt)
    assert "超时" not in client.get(path).text
    case = service(rt).list()[0]
    clock.set(case["ack_due_at"])
    clock.advance(minutes=12)
    service(rt).sweep()
    page = client.get(path).text
    assert "受理已超时 12 分钟" in page
    assert "已升级至 片区 上海片区" in page
    assert 'class="warn"' in page


def create_app_for(rt: Runtime) -> Any:
    from hub.web import create_app

    return create_app(rt)


def test_amount_is_shown_with_two_decimals() -> None:
    from hub.features.feedback.render import order_line

    assert (
        order_line({"order_id": "R-1", "amount": str(Decimal("86.5")), "items": ["鲜牛奶 1L"]})
        == "R-1 ¥86.50（鲜牛奶 1L）"
    )
    assert json.dumps(order_line({"order_id": "R-2"}), ensure_ascii=False) == '"R-2"'
