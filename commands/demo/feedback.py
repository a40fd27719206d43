"""The cases step of ``cxhub demo``: the 1-star review of step 2 is a case -> routed to the store's
DingTalk group robot (a local fake robot that checks the 加签 signature; its card has links, a
group robot cannot call back) and to the store manager through the corp app as an interactive card
-> the manager taps 确认受理 once: the fake DingTalk posts DingTalk's signed callback to the hub's
``/hooks/dingtalk`` -> the case is acknowledged, by name, and its escalation stops.

The review opened its case while step 2 ingested it (the feedback ingest hook). If the demo config
routes nobody (no ``feedback.contacts``), the step re-routes the open cases with ``DEMO_FEEDBACK``
below to a local robot and says so: exactly what ``CaseService.reroute`` does after a routing fix.
"""

from __future__ import annotations

import re
import time
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

DEMO_DESTINATION = "demo_dingtalk"
DEMO_TOKEN, DEMO_SECRET = "demo-robot-token", "SECdemo-robot-secret"

#: used only when the demo config routes nobody (see docs/feedback.md for the config)
DEMO_FEEDBACK: dict[str, Any] = {
    "sentiment": {"engine": "snownlp"},
    "contacts": {
        "xuhui_group": {"name": "徐汇店群", "kind": "group", "endpoints": [{"destination": DEMO_DESTINATION}]},
        "east_group": {"name": "华东大区群", "kind": "group", "endpoints": [{"destination": DEMO_DESTINATION}]},
    },
    "org": {
        "hq": {"name": "总部"},
        "regions": {"east": {"name": "华东大区", "contacts": ["east_group"]}},
        "districts": {"sh": {"name": "上海片区", "parent": "east"}},
        "stores": {
            "S001": {"name": "徐汇店", "parent": "sh", "contacts": ["xuhui_group"]},
            "S002": {"name": "静安店", "parent": "sh", "contacts": ["xuhui_group"]},
            "S003": {"name": "浦东店", "parent": "sh", "contacts": ["xuhui_group"]},
        },
    },
    "fallback": ["east_group"],
}


def demo_step(rt: Any, console: Console, data: dict[str, Any] | None = None) -> None:
    """Run the cases step on the demo runtime ``rt``."""
    from fastapi.testclient import TestClient

    from commands.demo.fake_dingtalk import FakeDingTalkRobot
    from hub.features.delivery.worker import DeliveryWorker
    from hub.features.feedback.cases import CaseService
    from hub.features.feedback.config import FeedbackConfig
    from hub.features.feedback.detection import Detector
    from hub.features.feedback.links import LinkSigner
    from hub.features.feedback.render import SEVERITY_ZH
    from hub.features.feedback.sentiment import load_analyzer
    from hub.registry import get as get_connector
    from hub.web import create_app

    console.rule("[bold]Cases: a 1-star review reaches the store's DingTalk robot and is acknowledged")
    service: CaseService | None = rt.features.get("feedback")
    if service is None:
        console.print("[yellow]the feedback feature is not installed; skipped[/]")
        return
    opened = service.list(status="new")
    table = Table("case", "severity", "store", "why", title="Cases opened while the reviews were ingested")
    for c in opened:
        table.add_row(
            f"#{c['id']}", SEVERITY_ZH[c["severity"]], c["doc"]["summary"]["store_name"], "; ".join(c["doc"]["reasons"])
        )
    console.print(table)
    if not opened:
        console.print("[yellow]no negative review in this run[/]")
        return

    shared = (data or {}).get("robot")  # `cxhub demo` starts the robot its config points at
    tz = service.cfg.timezone
    with shared if shared is not None else FakeDingTalkRobot({DEMO_TOKEN: DEMO_SECRET}) as robot:
        cls = get_connector("dingtalk_robot")
        opts = cls.Options.model_validate(
            {"access_token": DEMO_TOKEN, "secret": DEMO_SECRET, "base_url": robot.base_url}
        )
        robot_dst = cls(DEMO_DESTINATION, opts, rt.context)
        names = [DEMO_DESTINATION]
        resolve = {DEMO_DESTINATION: robot_dst}
        active = service
        if not service.cfg.contacts:
            console.print(
                "[yellow]the demo config routes nobody (no feedback.contacts); routing the open cases with "
                "commands/demo/feedback.py DEMO_FEEDBACK to a local DingTalk robot[/]"
            )
            cfg = FeedbackConfig.model_validate(DEMO_FEEDBACK)
            router_service = CaseService(
                cfg,
                rt.store,
                Detector(cfg, load_analyzer("none")),
                LinkSigner(rt.config.secret_key, rt.config.raw.server.public_url),
                clock=rt.clock,
            )
            for c in opened:
                router_service.reroute(c["id"], actor="demo", via="cli")
            active = router_service
        else:
            # DingTalk only: the demo's WeChat / SMS invitations are the surveys step's
            names = [
                n
                for n, d in rt.config.destinations.items()
                if d.config.connector in ("dingtalk_robot", "dingtalk_work")
            ]

        def destination(name: str) -> Any:
            return resolve.get(name) or rt.destination(name)

        worker = DeliveryWorker(rt.store, destination, names, clock=rt.clock)
        worker.drain()
        if not robot.wait_for(1, 10):
            console.print("[red]the local DingTalk robot received nothing[/]")
            return
        worst = max(opened, key=lambda c: ({"low": 0, "medium": 1, "high": 2}[c["severity"]], -c["id"]))
        case_id = worst["id"]
        robot.wait_for(len(opened), 5)
        card = next((r for r in robot.received if f"工单 #{case_id}**" in r.text), robot.received[0])
        console.print(
            f"the local DingTalk robot accepted {len(robot.received)} signed message(s) "
            f"({len(robot.rejected)} rejected); case #{case_id}'s card in the store group, as staff see it:"
        )
        console.print(card.body.get("actionCard", {}).get("text", card.text), highlight=False)
        console.print(
            "buttons (links: a group robot cannot call back): " + " | ".join(b["title"] for b in card.buttons),
            highlight=False,
        )
        client = TestClient(create_app(rt))

        # the link: a page (link previews change nothing) that asks who acts
        ack = next(b["actionURL"] for b in card.buttons if "/ack?" in b["actionURL"])
        path = ack.replace(rt.config.raw.server.public_url.rstrip("/"), "")
        page = client.get(path)
        console.print(
            f"GET {path.split('?')[0]}?t=… -> {page.status_code}: a confirm page that asks for a name "
            f"({('必填' in page.text and 'required') or 'optional'}); case is still {service.get(case_id)['status']}"
        )

        app_card = _app_card(robot, case_id)
        source = rt.config.sources.get("dingtalk")
        if app_card is not None and source is not None:
            params = app_card["cardData"]["cardParamMap"]
            console.print(
                f"the store app's interactive card to {app_card['openSpaceId'].rsplit('.', 1)[-1]} "
                f"(createAndDeliver, template {app_card['cardTemplateId']}): "
                f"[{params['ack_label']}] [{params.get('resolve_label', '')}] one tap each, [查看详情] a link",
                highlight=False,
            )
            o = source.options
            answer = robot.tap(
                app_card,
                user_id="wang01",
                action="ack",
                post=client.post,
                url="/hooks/dingtalk",
                token=o.token.get_secret_value(),
                aes_key=o.encoding_aes_key.get_secret_value(),
                app_key=o.app_key,
            )
            console.print(
                f"王店长 (wang01) taps 确认受理 once -> the fake DingTalk posts its sealed, signed callback to "
                f'/hooks/dingtalk -> {answer.status_code} (encrypted "success")'
            )
        else:  # a config without the corp app: the link's page, then its button, with a name
            token = re.search(r'name="t" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            done = client.post(path.split("?")[0], data={"t": token, "by": "王店长"})
            console.print(f"POST (the page's 确认受理 button, name 王店长) -> {done.status_code}")

    case = service.get(case_id)
    when = case["acknowledged_at"].astimezone(ZoneInfo(tz)) if case["acknowledged_at"] else None
    console.print(
        f"case #{case_id} is {case['status']}: 受理人 {case['acknowledged_by']}"
        + (f" at {when:%H:%M:%S} ({tz})" if when else ""),
        highlight=False,
    )
    trail = Table(f"at ({tz})", "action", "who", "via", title=f"Case #{case_id}: {case['status']}, audit trail")
    for e in case["events"]:
        trail.add_row(f"{e['at'].astimezone(ZoneInfo(tz)):%H:%M:%S}", e["action"], e["actor"], e["via"])
    console.print(trail)
    before = len(case["events"])
    active.sweep(case["ack_due_at"])  # the moment escalation would have started
    after = len(service.get(case_id)["events"])
    console.print(
        f"SLA sweep at the acknowledge deadline: {after - before} new step(s) for case #{case_id}: "
        "acknowledged, so nothing escalates (`cxhub cases`, `cxhub case show ID`)"
    )


def _app_card(robot: Any, case_id: int) -> dict[str, Any] | None:
    """The interactive card the app delivered for ``case_id`` (its acknowledge key names the case)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for c in robot.cards:
            if c["cardData"]["cardParamMap"].get("ack_key", "").startswith(f"cxhub:{case_id}:ack:"):
                return dict(c)
        time.sleep(0.05)
    return None
