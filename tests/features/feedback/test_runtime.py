"""The feature inside a Runtime: config validation, the ingest hook, the action pages, card callbacks,
the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from kit.cases import review_record, write_runtime_config
from kit.runtime import build_runtime
from sqlalchemy import select
from typer.testing import CliRunner

from hub.config import load_config
from hub.errors import ConfigError
from hub.features.feedback.cases import CaseService
from hub.mapping import compile_mapping, resolve_mapping_ref
from hub.runtime import Runtime
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from hub.store.schema import outbox
from hub.sync import run_sync
from hub.yamlio import load_yaml


@pytest.fixture
def rt(tmp_path: Path, clock: FakeClock) -> Any:
    path = write_runtime_config(tmp_path, robot="http://127.0.0.1:9")
    runtime = build_runtime(path, clock=clock)
    yield runtime
    runtime.close()


def feed(rt: Runtime, *records: dict[str, Any]) -> None:
    path = Path(rt.config.sources["reviews"].options.path)  # type: ignore[attr-defined]
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    run_sync(rt, "reviews")


def ack_url(rt: Runtime, action: str = "ack") -> str:
    with rt.store.connect() as conn:
        msg = conn.execute(select(outbox.c.message).order_by(outbox.c.id)).first()[0]  # type: ignore[index]
    url = next(b["url"] for b in msg["buttons"] if f"/{action}?" in b["url"])
    return url.replace(rt.config.raw.server.public_url, "")


def test_review_feed_opens_a_case(rt: Runtime) -> None:
    feed(rt, review_record(1), review_record(2, rating=5, text="很好，下次还来", member="M002"))
    service: CaseService = rt.features["feedback"]
    [case] = service.list()
    assert case["severity"] == "high" and case["store"] == "S001"
    with rt.store.connect() as conn:
        rows = conn.execute(select(outbox.c.destination, outbox.c.key)).all()
    assert [d for d, _ in rows] == ["dt_s001"]


def test_link_get_shows_a_page_and_post_acknowledges(rt: Runtime, clock: FakeClock) -> None:
    from hub.web import create_app

    feed(rt, review_record(1))
    client = TestClient(create_app(rt))
    url = ack_url(rt)
    page = client.get(url)
    assert page.status_code == 200 and "确认受理" in page.text and "徐汇店" in page.text
    service: CaseService = rt.features["feedback"]
    assert service.list()[0]["status"] == "new"  # a link preview bot's GET changes nothing
    token = re.search(r'name="t" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post(url.split("?")[0], data={"t": token, "by": "张店长"})
    assert done.status_code == 200 and "已确认受理" in done.text
    case = service.get(service.list()[0]["id"])
    assert (case["status"], case["acknowledged_by"]) == ("acknowledged", "张店长")
    assert [(e["action"], e["via"]) for e in case["events"]][-1] == ("acknowledged", "link")
    again = client.post(url.split("?")[0], data={"t": token})
    assert "无需重复操作" in again.text
    # the confirmation page offers "resolved" with its own signed token
    token2 = re.search(r'action="/cases/\d+/resolve".*?name="t" value="([^"]+)"', done.text, re.S).group(1)  # type: ignore[union-attr]
    client.post(url.split("?")[0].replace("/ack", "/resolve"), data={"t": token2, "by": "张店长"})
    assert service.list()[0]["status"] == "resolved"


@pytest.mark.parametrize("mutate", ["tamper", "other_action", "other_case", "expired", "empty"])
def test_bad_links_are_refused(rt: Runtime, clock: FakeClock, mutate: str) -> None:
    from hub.web import create_app

    feed(rt, review_record(1))
    client = TestClient(create_app(rt))
    url = ack_url(rt)
    path, _, query = url.partition("?t=")
    if mutate == "tamper":
        url = path + "?t=" + query[:-2] + ("AA" if not query.endswith("AA") else "BB")
    elif mutate == "other_action":
        url = path.replace("/ack", "/resolve") + "?t=" + query
    elif mutate == "other_case":
        url = re.sub(r"/cases/\d+/", "/cases/999/", url)
    elif mutate == "expired":
        clock.advance(days=8)
    else:
        url = path
    assert client.get(url).status_code == 403
    assert client.post(url.split("?")[0], data={"t": url.partition("?t=")[2]}).status_code == 403
    assert rt.features["feedback"].list()[0]["status"] == "new"


def _feishu_mapping() -> Any:
    data, lines = load_yaml(resolve_mapping_ref("feishu_events", Path(".")))
    return compile_mapping(data, lines)


def test_feishu_card_callback_acknowledges(rt: Runtime, clock: FakeClock) -> None:
    feed(rt, review_record(1))
    with rt.store.connect() as conn:
        msg = conn.execute(select(outbox.c.message)).first()[0]  # type: ignore[index]
    value = msg["data"]["card_actions"]["ack"]
    callback = {
        "schema": "2.0",
        "header": {"event_type": "card.action.trigger", "event_id": "ev-1", "create_time": "1794189600000"},
        "create_time_ms": int(clock().timestamp() * 1000),
        "event": {
            "operator": {"open_id": "ou_zhang", "user_id": "zhang01"},
            "token": "c-token",
            "action": {"tag": "button", "value": value},
            "context": {"open_message_id": "om_1", "open_chat_id": "oc_1"},
        },
    }
    forged = json.loads(json.dumps(callback))
    forged["event"]["action"]["value"]["t"] = value["t"][:-3] + "xyz"
    mapping = _feishu_mapping()
    rt.ingestor.ingest("feishu", mapping, [RawRecord("feishu", "ev-0", forged)])
    service: CaseService = rt.features["feedback"]
    assert service.list()[0]["status"] == "new"  # a forged button value does nothing
    rt.ingestor.ingest("feishu", mapping, [RawRecord("feishu", "ev-1", callback)])
    case = service.get(service.list()[0]["id"])
    # not in this config's staff directory: recorded as the platform id
    assert (case["status"], case["acknowledged_by"]) == ("acknowledged", "feishu:zhang01")
    assert case["events"][-1]["via"] == "card"


def test_unknown_destination_is_a_config_error_with_line(tmp_path: Path) -> None:
    path = write_runtime_config(tmp_path, robot="http://127.0.0.1:9")
    text = path.read_text(encoding="utf-8").replace("destination: dt_district", "destination: dt_nowhere")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Runtime(load_config(path))
    assert "dt_nowhere" in str(info.value) and "cxhub.yaml:" in str(info.value)


def test_unknown_contact_is_a_config_error(tmp_path: Path) -> None:
    path = write_runtime_config(tmp_path, robot="http://127.0.0.1:9")
    text = path.read_text(encoding="utf-8").replace("contacts: [li]", "contacts: [wang]")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="wang"):
        load_config(path)


def test_cli_cases_show_ack_resolve(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import commands.cases as cmd

    feed(rt, review_record(1))
    cid = rt.features["feedback"].list()[0]["id"]
    app = typer.Typer()
    cmd.register(app)
    runner = CliRunner()
    cfg = ["--config", rt.config.file]
    out = runner.invoke(app, ["cases", "--json", *cfg])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.splitlines()[0])["status"] == "new"
    out = runner.invoke(app, ["cases", "--status", "bogus", *cfg])
    assert out.exit_code == 1
    out = runner.invoke(app, ["case", "ack", str(cid), "--by", "ops", *cfg])
    assert out.exit_code == 0 and "acknowledged by ops via cli" in out.output
    out = runner.invoke(app, ["case", "ack", str(cid), *cfg])
    assert out.exit_code == 1  # already acknowledged
    out = runner.invoke(app, ["case", "resolve", str(cid), "--note", "已退款", *cfg])
    assert out.exit_code == 0
    out = runner.invoke(app, ["case", "show", str(cid), *cfg])
    assert out.exit_code == 0 and "acknowledged" in out.output and "resolved" in out.output
    out = runner.invoke(app, ["case", "show", "999", *cfg])
    assert out.exit_code == 1
    out = runner.invoke(app, ["cases", "--status", "resolved", *cfg])
    assert out.exit_code == 0 and "1 case(s)" in out.output


def test_dingtalk_card_callback_resolves(rt: Runtime, clock: FakeClock) -> None:
    feed(rt, review_record(1))
    with rt.store.connect() as conn:
        msg = conn.execute(select(outbox.c.message)).first()[0]  # type: ignore[index]
    params = {k: str(v) for k, v in msg["data"]["card_actions"]["resolve"].items()}  # DingTalk params are strings
    content = {"cardPrivateData": {"actionIds": ["resolve"], "params": params}}
    callback = {
        "outTrackId": "case-card-1",
        "corpId": "ding1",
        "userId": "manager01",
        "TimeStamp": str(int(clock().timestamp() * 1000)),
        "content": json.dumps(content),
        "content_json": content,
    }
    data, lines = load_yaml(resolve_mapping_ref("dingtalk_events", Path(".")))
    rt.ingestor.ingest("dingtalk", compile_mapping(data, lines), [RawRecord("dingtalk", "cb-1", callback)])
    service: CaseService = rt.features["feedback"]
    case = service.get(service.list()[0]["id"])
    assert (case["status"], case["resolved_by"]) == ("resolved", "dingtalk:manager01")
    assert [(e["action"], e["via"]) for e in case["events"]][-1] == ("resolved", "card")


def test_wecom_template_card_button_key_acknowledges(rt: Runtime, clock: FakeClock) -> None:
    from hub.ingest import IngestContext
    from hub.model import EventKind, Org, TouchpointEvent

    feed(rt, review_record(1))
    with rt.store.connect() as conn:
        msg = conn.execute(select(outbox.c.message)).first()[0]  # type: ignore[index]
    key = msg["data"]["card_actions"]["ack"]["key"]
    assert key.startswith("cxhub:")
    service: CaseService = rt.features["feedback"]
    for event_key, expected in ((key[:-4] + "AAAA", "new"), (key, "acknowledged")):  # forged first
        ev = TouchpointEvent(
            source="wecom",
            external_id=f"tc-{event_key[-6:]}",
            kind=EventKind.other,
            occurred_at=clock(),
            org=Org(staff="zhangsan"),
            attributes={"event": "template_card_event", "event_key": event_key},
        )
        with rt.store.begin() as conn:
            service(IngestContext(conn=conn, now=clock(), store=rt.store), [ev])
        assert service.list()[0]["status"] == expected
    assert service.list()[0]["acknowledged_by"] == "wecom:zhangsan"
