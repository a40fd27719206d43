"""One tap on a card acknowledges the case: for Feishu, WeCom and DingTalk, the card cxhub sends
carries a callback button (checked against the platform's documented card schema), the platform's
own signed callback for a tap on *that* button goes through the real receiver (``/hooks/...``),
and the case is acknowledged with the presser's name from the staff directory and the time.

The platform side is played by an ``httpx.MockTransport`` (token and send APIs, answers as
documented) and by the platforms' own crypto: wechatpy seals WeCom and DingTalk callbacks, Feishu's
AES / ``X-Lark-Signature`` scheme signs Feishu's (``kit.peers``).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kit.cases import review_record
from kit.peers import dingtalk_push, feishu_push, wecom_push
from kit.push import (
    DING_AES_KEY,
    DING_APP_KEY,
    DING_TOKEN,
    FEISHU_ENCRYPT_KEY,
    FEISHU_TOKEN,
    WECOM_AES_KEY,
    WECOM_CORP_ID,
    WECOM_TOKEN,
)
from kit.runtime import build_runtime

from hub.features.delivery import build_worker
from hub.features.feedback.cases import CaseService
from hub.runtime import Runtime
from hub.sdk.testing import FakeClock
from hub.sync import run_sync
from hub.web import create_app

CONFIG = """
secret_key: test-secret-key
store: {{url: "sqlite:///{db}"}}
server: {{public_url: "https://cx.example.com"}}
sources:
  reviews:
    connector: jsonl
    mapping: generic_review
    options: {{path: "{feed}", id_path: review_id}}
  feishu:
    connector: feishu_events
    options: {{verification_token: {feishu_token}, encrypt_key: {feishu_key}, card_toast: 已收到}}
  wecom:
    connector: wecom
    options: {{token: "{wecom_token}", encoding_aes_key: {wecom_aes}, corp_id: {wecom_corp}}}
  ding:
    connector: dingtalk_events
    options: {{token: {ding_token}, encoding_aes_key: {ding_aes}, app_key: {ding_app}}}
destinations:
  feishu_app:
    connector: feishu_app
    options: {{app_id: cli_cx, app_secret: feishu-app-secret, base_url: "https://feishu.test"}}
  wecom_app:
    connector: wecom_app
    options: {{corp_id: {wecom_corp}, secret: wecom-app-secret, agent_id: 1000002, base_url: "https://wecom.test"}}
  dingtalk_app:
    connector: dingtalk_work
    options:
      app_key: {ding_app}
      app_secret: dingtalk-app-secret
      agent_id: 2001
      base_url: "https://oapi.dingtalk.test"
      api_url: "https://api.dingtalk.test"
      card_template_id: cxhub-case.schema
      callback_route_key: cxhub_cases
feedback:
  sentiment: {{engine: lexicon}}
  contacts:
    zhang:
      name: 张店长
      endpoints:
        - {{destination: feishu_app, to: [ou_zhang]}}
        - {{destination: wecom_app, to: [ZhangSan]}}
        - {{destination: dingtalk_app, to: [zhangsan01]}}
  org:
    stores: {{S001: {{name: 徐汇店, contacts: [zhang]}}}}
"""


class FakeApis:
    """Feishu, WeCom and DingTalk token and send APIs; every send body is kept."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {"feishu": [], "wecom": [], "dingtalk": []}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        body = json.loads(request.content) if request.content else {}
        with self.lock:
            if host == "feishu.test" and path.endswith("/tenant_access_token/internal"):
                return httpx.Response(200, json={"code": 0, "tenant_access_token": "t-feishu", "expire": 7200})
            if host == "feishu.test" and path == "/open-apis/im/v1/messages":
                assert request.headers["authorization"] == "Bearer t-feishu"
                self.sent["feishu"].append(body)
                return httpx.Response(200, json={"code": 0, "msg": "success", "data": {"message_id": "om_1"}})
            if host == "wecom.test" and path == "/cgi-bin/gettoken":
                return httpx.Response(200, json={"errcode": 0, "access_token": "wecom-tok", "expires_in": 7200})
            if host == "wecom.test" and path == "/cgi-bin/message/send":
                assert request.url.params["access_token"] == "wecom-tok"
                self.sent["wecom"].append(body)
                return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": "m1", "response_code": "rc1"})
            if host == "oapi.dingtalk.test" and path == "/gettoken":
                return httpx.Response(200, json={"errcode": 0, "access_token": "ding-tok", "expires_in": 7200})
            if host == "api.dingtalk.test" and path == "/v1.0/card/instances/createAndDeliver":
                assert request.headers["x-acs-dingtalk-access-token"] == "ding-tok"
                self.sent["dingtalk"].append(body)
                return httpx.Response(200, json={"success": True, "result": {"outTrackId": body.get("outTrackId")}})
        return httpx.Response(404, json={"code": -1, "errcode": -1, "msg": f"no {host}{path}"})


@pytest.fixture
def apis() -> FakeApis:
    return FakeApis()


def make_rt(tmp_path: Path, clock: FakeClock, apis: FakeApis, store: str | None = None) -> Runtime:
    feed = tmp_path / "reviews.jsonl"
    feed.touch()
    text = CONFIG.format(
        db=tmp_path / "cards.db",
        feed=feed,
        feishu_token=FEISHU_TOKEN,
        feishu_key=FEISHU_ENCRYPT_KEY,
        wecom_token=WECOM_TOKEN,
        wecom_aes=WECOM_AES_KEY,
        wecom_corp=WECOM_CORP_ID,
        ding_token=DING_TOKEN,
        ding_aes=DING_AES_KEY,
        ding_app=DING_APP_KEY,
    )
    return build_runtime(
        text, path=tmp_path / "cxhub.yaml", clock=clock, transport=httpx.MockTransport(apis), store=store
    )


@pytest.fixture
def rt(tmp_path: Path, clock: FakeClock, apis: FakeApis) -> Any:
    runtime = make_rt(tmp_path, clock, apis)
    yield runtime
    runtime.close()


@pytest.fixture
def pg_rt(tmp_path: Path, clock: FakeClock, apis: FakeApis) -> Any:
    """The same hub on a fresh PostgreSQL database of its own."""
    from kit.databases import temporary_postgres_database

    with temporary_postgres_database() as url:
        runtime = make_rt(tmp_path, clock, apis, store=url)
        yield runtime
        runtime.close()


def open_case(rt: Runtime) -> dict[str, Any]:
    """A 1-star review opens a case; its cards go out to the three apps."""
    path = Path(rt.config.sources["reviews"].options.path)  # type: ignore[attr-defined]
    path.write_text(json.dumps(review_record(1), ensure_ascii=False) + "\n", encoding="utf-8")
    run_sync(rt, "reviews")
    build_worker(rt).drain()
    service: CaseService = rt.features["feedback"]
    [case] = service.list()
    return case


def case_now(rt: Runtime, case_id: int) -> dict[str, Any]:
    service: CaseService = rt.features["feedback"]
    return service.get(case_id)


# ---------------------------------------------------------------- the platforms' card schemas


def check_feishu_card(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The message card JSON (1.0) as documented: header.title plain_text, elements with an
    ``action`` module whose buttons have ``tag: button``, ``text`` (plain_text / lark_md), ``type``
    (default / primary / danger) and either ``url`` (jump) or ``value`` (callback: an object or a
    string), never both. Returns the buttons."""
    assert set(card) <= {"config", "header", "elements", "card_link", "i18n_elements"}
    assert card["header"]["title"]["tag"] == "plain_text" and card["header"]["title"]["content"]
    buttons: list[dict[str, Any]] = []
    for el in card["elements"]:
        assert el["tag"] in ("markdown", "div", "hr", "note", "action", "img", "column_set")
        if el["tag"] == "action":
            for b in el["actions"]:
                assert set(b) <= {"tag", "text", "type", "url", "multi_url", "value", "confirm"}, b
                assert b["tag"] == "button" and b["text"]["tag"] in ("plain_text", "lark_md")
                assert b["type"] in ("default", "primary", "danger")
                assert ("url" in b) != ("value" in b), b
                assert isinstance(b.get("value", {}), dict | str)
                buttons.append(b)
    return buttons


def check_wecom_button_card(msg: dict[str, Any]) -> dict[str, Any]:
    """``message/send`` with ``msgtype: template_card``, ``card_type: button_interaction`` as
    documented: ``main_title.title``, ``task_id`` (digits, letters, ``_-@``, at most 128 bytes),
    1-6 buttons with ``text``, ``style`` 1-4 and, for ``type`` 0 (callback), a ``key`` of at most
    1024 bytes; ``type`` 1 buttons have a ``url``; ``horizontal_content_list`` at most 6 rows."""
    assert msg["msgtype"] == "template_card" and msg["agentid"] == 1000002 and msg["touser"] == "ZhangSan"
    card = msg["template_card"]
    assert card["card_type"] == "button_interaction" and card["main_title"]["title"]
    assert re.fullmatch(r"[0-9A-Za-z_\-@]{1,128}", card["task_id"])
    assert 1 <= len(card["button_list"]) <= 6
    for b in card["button_list"]:
        assert b["text"] and b["style"] in (1, 2, 3, 4)
        if b.get("type", 0) == 0:
            assert 0 < len(b["key"].encode()) <= 1024
        else:
            assert b["type"] == 1 and b["url"].startswith("https://")
    assert len(card.get("horizontal_content_list", [])) <= 6
    for row in card.get("horizontal_content_list", []):
        assert set(row) <= {"keyname", "value", "type", "url", "media_id", "userid"}
    return card


# the request fields of card_1_0 CreateAndDeliverRequest (alibabacloud_dingtalk, aliyun/dingtalk-sdk)
DINGTALK_CREATE_AND_DELIVER = {
    "callbackRouteKey",
    "callbackType",
    "cardData",
    "cardTemplateId",
    "coFeedOpenDeliverModel",
    "coFeedOpenSpaceModel",
    "docOpenDeliverModel",
    "imGroupOpenDeliverModel",
    "imGroupOpenSpaceModel",
    "imRobotOpenDeliverModel",
    "imRobotOpenSpaceModel",
    "imSingleOpenDeliverModel",
    "imSingleOpenSpaceModel",
    "openDynamicDataConfig",
    "openSpaceId",
    "outTrackId",
    "privateData",
    "topOpenDeliverModel",
    "topOpenSpaceModel",
    "userId",
    "userIdType",
}


def check_dingtalk_card(body: dict[str, Any]) -> dict[str, str]:
    """``createAndDeliver`` as the SDK's model has it: only its fields, the required ones set
    (``cardTemplateId``, ``outTrackId``, ``openSpaceId``, ``cardData``), ``cardParamMap`` strings
    only, an ``IM_ROBOT`` space with its robot deliver model. Returns the card params."""
    assert set(body) <= DINGTALK_CREATE_AND_DELIVER, set(body) - DINGTALK_CREATE_AND_DELIVER
    assert body["cardTemplateId"] == "cxhub-case.schema" and body["outTrackId"]
    assert body["openSpaceId"] == "dtv1.card//IM_ROBOT.zhangsan01"
    assert body["imRobotOpenDeliverModel"] == {"spaceType": "IM_ROBOT", "robotCode": DING_APP_KEY}
    assert body["callbackType"] == "HTTP" and body["callbackRouteKey"] == "cxhub_cases"
    params = body["cardData"]["cardParamMap"]
    assert all(isinstance(v, str) for v in params.values())
    return dict(params)


# ---------------------------------------------------------------- one tap per platform


def test_feishu_card_tap_acknowledges_in_one_tap(rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    feishu_tap(rt, apis, clock)


def test_feishu_card_tap_on_postgresql(pg_rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    feishu_tap(pg_rt, apis, clock)


def feishu_tap(rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    case = open_case(rt)
    [sent] = apis.sent["feishu"]
    assert sent["receive_id"] == "ou_zhang" and sent["msg_type"] == "interactive"
    buttons = check_feishu_card(json.loads(sent["content"]))
    assert [b["text"]["content"] for b in buttons] == ["确认受理", "已解决", "不是差评", "查看详情"]
    ack = buttons[0]
    assert "url" not in ack and ack["value"]["cxhub_case"] == case["id"]  # a callback, not a link
    assert buttons[2]["value"]["op"] == "not_negative" and "url" not in buttons[2]
    assert buttons[3]["url"].startswith("https://cx.example.com/cases/")
    # the tap: Feishu's card.action.trigger with that button's value, encrypted and signed
    event = {
        "schema": "2.0",
        "header": {
            "event_id": "ev-tap-1",
            "event_type": "card.action.trigger",
            "create_time": str(int(clock().timestamp() * 1000)),
            "token": FEISHU_TOKEN,
            "app_id": "cli_cx",
            "tenant_key": "t1",
        },
        "event": {
            "operator": {"tenant_key": "t1", "open_id": "ou_zhang", "union_id": "on_zhang"},
            "token": "c-card-token",
            "action": {"tag": "button", "value": ack["value"]},
            "host": "im_message",
            "context": {"open_message_id": "om_1", "open_chat_id": "oc_1"},
        },
    }
    client = TestClient(create_app(rt))
    ts = int(clock().timestamp())
    headers, body = feishu_push(event, encrypt_key=FEISHU_ENCRYPT_KEY, ts=ts, nonce="tap-1")
    # lark-oapi's own dispatcher takes this request as a card.action.trigger with that value
    assert lark_reads(headers, body) == ("ou_zhang", ack["value"])
    forged = dict(headers, **{"X-Lark-Signature": "0" * 64})
    assert client.post("/hooks/feishu", content=body, headers=forged).status_code in (401, 403)
    assert case_now(rt, case["id"])["status"] == "new"  # an unsigned tap does nothing
    r = client.post("/hooks/feishu", content=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"toast": {"type": "info", "content": "已收到"}}
    done = case_now(rt, case["id"])
    assert done["status"] == "acknowledged"
    assert done["acknowledged_by"] == "张店长 (feishu:ou_zhang)"
    assert done["acknowledged_at"] == clock()
    assert (done["events"][-1]["action"], done["events"][-1]["via"]) == ("acknowledged", "card")


def lark_reads(headers: dict[str, str], body: bytes) -> tuple[str | None, Any]:
    """(operator open_id, action value) as lark-oapi's EventDispatcherHandler decodes the push."""
    import lark_oapi as lark
    from lark_oapi.core.model import RawRequest
    from lark_oapi.event.callback.model.p2_card_action_trigger import (
        P2CardActionTrigger,
        P2CardActionTriggerResponse,
    )

    seen: list[P2CardActionTrigger] = []

    def on_tap(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        seen.append(data)
        return P2CardActionTriggerResponse({})

    handler = (
        lark.EventDispatcherHandler.builder(FEISHU_ENCRYPT_KEY, FEISHU_TOKEN)
        .register_p2_card_action_trigger(on_tap)
        .build()
    )
    req = RawRequest()
    req.uri, req.body, req.headers = "/hooks/feishu", body, headers
    assert handler.do(req).status_code == 200
    [data] = seen
    assert data.event is not None and data.event.operator is not None and data.event.action is not None
    return data.event.operator.open_id, data.event.action.value


def test_wecom_template_card_tap_acknowledges_in_one_tap(rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    case = open_case(rt)
    [sent] = apis.sent["wecom"]
    card = check_wecom_button_card(sent)
    [ack, resolve, not_negative, view] = card["button_list"]
    assert not_negative["key"].startswith(f"cxhub:{case['id']}:not_negative:")
    assert resolve["key"].startswith(f"cxhub:{case['id']}:resolve:")
    assert (ack["text"], ack["type"]) == ("确认受理", 0) and ack["key"].startswith(f"cxhub:{case['id']}:ack:")
    assert (view["type"], view["url"].startswith("https://cx.example.com/cases/")) == (1, True)
    assert {"keyname": "门店", "value": "徐汇店（S001）"} in card["horizontal_content_list"]
    ts = int(clock().timestamp())

    def tap(key: str, nonce: str) -> httpx.Response:
        plain = (
            f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName>"
            "<FromUserName><![CDATA[ZhangSan]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[template_card_event]]></Event>"
            f"<EventKey><![CDATA[{key}]]></EventKey>"
            f"<TaskId><![CDATA[{card['task_id']}]]></TaskId>"
            "<CardType><![CDATA[button_interaction]]></CardType>"
            "<ResponseCode><![CDATA[rc-tap]]></ResponseCode><AgentID>1000002</AgentID></xml>"
        )
        query, body = wecom_push(
            plain, token=WECOM_TOKEN, aes_key=WECOM_AES_KEY, corp_id=WECOM_CORP_ID, ts=ts, nonce=nonce
        )
        return client.post("/hooks/wecom", params=query, content=body, headers={"content-type": "text/xml"})

    client = TestClient(create_app(rt))
    assert tap(ack["key"][:-4] + "AAAA", "n-forged").status_code == 200  # signed by WeCom, value forged
    assert case_now(rt, case["id"])["status"] == "new"
    r = tap(ack["key"], "n-tap")
    assert r.status_code == 200 and r.content == b""
    done = case_now(rt, case["id"])
    assert (done["status"], done["acknowledged_by"]) == ("acknowledged", "张店长 (wecom:ZhangSan)")
    assert done["acknowledged_at"] == clock() and done["events"][-1]["via"] == "card"


def test_dingtalk_interactive_card_tap_acknowledges_in_one_tap(rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    case = open_case(rt)
    [sent] = apis.sent["dingtalk"]
    params = check_dingtalk_card(sent)
    assert params["ack_label"] == "确认受理" and params["ack_key"].startswith(f"cxhub:{case['id']}:ack:")
    assert "**工单 #" in params["markdown"] and params["view_url"].startswith("https://cx.example.com/cases/")
    # the tap: the card's callback (its template binds the button's params to ${ack_key}), sealed
    content = {"cardPrivateData": {"actionIds": ["ack"], "params": {"cxhub": params["ack_key"]}}}
    callback = {
        "type": "actionCallback",
        "outTrackId": sent["outTrackId"],
        "corpId": "ding-corp",
        "userId": "zhangsan01",
        "content": json.dumps(content),
    }
    ts_ms = int(clock().timestamp() * 1000)
    query, body = dingtalk_push(
        callback, token=DING_TOKEN, aes_key=DING_AES_KEY, app_key=DING_APP_KEY, ts_ms=ts_ms, nonce="d1"
    )
    client = TestClient(create_app(rt))
    bad = dict(query, signature="0" * 40)
    assert client.post("/hooks/ding", params=bad, content=body).status_code in (401, 403)
    assert case_now(rt, case["id"])["status"] == "new"
    r = client.post("/hooks/ding", params=query, content=body)
    assert r.status_code == 200 and set(r.json()) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    done = case_now(rt, case["id"])
    assert (done["status"], done["acknowledged_by"]) == ("acknowledged", "张店长 (dingtalk:zhangsan01)")
    assert done["acknowledged_at"] == clock() and done["events"][-1]["via"] == "card"


def test_an_unknown_presser_is_recorded_by_platform_id(rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    case = open_case(rt)
    params = check_dingtalk_card(apis.sent["dingtalk"][0])
    content = {"cardPrivateData": {"actionIds": ["ack"], "params": {"cxhub": params["ack_key"]}}}
    callback = {"outTrackId": "x", "corpId": "c", "userId": "wang09", "content": json.dumps(content)}
    ts_ms = int(clock().timestamp() * 1000)
    query, body = dingtalk_push(
        callback, token=DING_TOKEN, aes_key=DING_AES_KEY, app_key=DING_APP_KEY, ts_ms=ts_ms, nonce="d2"
    )
    assert TestClient(create_app(rt)).post("/hooks/ding", params=query, content=body).status_code == 200
    assert case_now(rt, case["id"])["acknowledged_by"] == "dingtalk:wang09"


def test_the_demo_shows_a_one_tap_acknowledge_from_a_card_callback(tmp_path: Path) -> None:
    """``cxhub demo`` (a real process): the store app's card reaches the fake DingTalk, the fake
    posts the signed callback of 王店长's tap, and the case is acknowledged by name via the card."""
    import os
    import subprocess
    import sys

    cxhub = str(Path(sys.executable).with_name("cxhub"))
    env = {k: v for k, v in os.environ.items() if k not in ("CXHUB_STORE_URL", "CXHUB_DEMO_DIR")}
    res = subprocess.run(
        [cxhub, "demo", "--workdir", str(tmp_path / "demo")],
        env={**env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "the store app's interactive card to wang01" in out
    assert "posts its sealed, signed callback to /hooks/dingtalk -> 200" in out
    assert "受理人 王店长 (dingtalk:wang01)" in out
    assert re.search(r"acknowledged\s*│\s*王店长 \(dingtalk:wang01\)\s*│\s*card", out), out
    assert "0 new step(s)" in out


def test_a_retried_dingtalk_card_callback_is_stored_once(rt: Runtime, apis: FakeApis, clock: FakeClock) -> None:
    """DingTalk retries a callback with a new timestamp and nonce: the same tap, one touchpoint."""
    from sqlalchemy import func, select

    from hub.store.schema import touchpoints

    case = open_case(rt)
    params = check_dingtalk_card(apis.sent["dingtalk"][0])
    content = {"cardPrivateData": {"actionIds": ["ack"], "params": {"cxhub": params["ack_key"]}}}
    callback = {"outTrackId": "o-1", "corpId": "c", "userId": "zhangsan01", "content": json.dumps(content)}
    client = TestClient(create_app(rt))
    for nonce in ("r1", "r2"):
        clock.advance(seconds=5)
        ts_ms = int(clock().timestamp() * 1000)
        query, body = dingtalk_push(
            callback, token=DING_TOKEN, aes_key=DING_AES_KEY, app_key=DING_APP_KEY, ts_ms=ts_ms, nonce=nonce
        )
        assert client.post("/hooks/ding", params=query, content=body).status_code == 200
    with rt.store.connect() as conn:
        n = conn.execute(select(func.count()).select_from(touchpoints).where(touchpoints.c.source == "ding")).scalar()
    assert n == 1
    assert [e["action"] for e in case_now(rt, case["id"])["events"]].count("acknowledged") == 1


def test_not_negative_in_one_tap_ends_the_case_and_labels_the_text(
    rt: Runtime, apis: FakeApis, clock: FakeClock
) -> None:
    """Staff tap 不是差评 on the card: the case ends (no escalation, no recovery survey for a false
    alarm), and the touchpoint's text is stored as a labelled example with who and when."""
    from sqlalchemy import select

    from hub.features.feedback.verdicts import feedback_labels

    case = open_case(rt)
    [sent] = apis.sent["feishu"]
    button = check_feishu_card(json.loads(sent["content"]))[2]
    event = {
        "schema": "2.0",
        "header": {
            "event_id": "ev-tap-nn",
            "event_type": "card.action.trigger",
            "create_time": str(int(clock().timestamp() * 1000)),
            "token": FEISHU_TOKEN,
            "app_id": "cli_cx",
            "tenant_key": "t1",
        },
        "event": {
            "operator": {"tenant_key": "t1", "open_id": "ou_zhang", "union_id": "on_zhang"},
            "token": "c-card-token",
            "action": {"tag": "button", "value": button["value"]},
            "host": "im_message",
            "context": {"open_message_id": "om_1", "open_chat_id": "oc_1"},
        },
    }
    headers, body = feishu_push(event, encrypt_key=FEISHU_ENCRYPT_KEY, ts=int(clock().timestamp()), nonce="tap-nn")
    assert TestClient(create_app(rt)).post("/hooks/feishu", content=body, headers=headers).status_code == 200
    done = case_now(rt, case["id"])
    assert done["status"] == "resolved" and done["resolved_by"] == "张店长 (feishu:ou_zhang)"
    assert [e["action"] for e in done["events"]][-2:] == ["marked not negative", "verdict"]
    with rt.store.connect() as conn:
        [label] = conn.execute(select(feedback_labels)).mappings().all()
    assert label["verdict"] == "not_negative" and label["actor"] == "张店长 (feishu:ou_zhang)"
    assert label["via"] == "card" and label["case_id"] == case["id"]
