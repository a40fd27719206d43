"""The cases step of ``cxhub demo``: the 1-star review of step 2 is a case -> routed to the store's
DingTalk group robot (a local fake robot that checks the 加签 signature) -> the card's acknowledge
link is followed (the real FastAPI page, then its button) -> the case is acknowledged and its
escalation stops.

The review opened its case while step 2 ingested it (the feedback ingest hook). If the demo config
routes nobody (no ``feedback.contacts``), the step re-routes the open cases with ``DEMO_FEEDBACK``
below to a local robot and says so: exactly what ``CaseService.reroute`` does after a routing fix.
"""

from __future__ import annotations

import re
from typing import Any

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
            # the robots only: the demo's WeChat / SMS invitations wait in the outbox (no platform here)
            names = [n for n, d in rt.config.destinations.items() if d.config.connector == "dingtalk_robot"]

        def destination(name: str) -> Any:
            return resolve.get(name) or rt.destination(name)

        worker = DeliveryWorker(rt.store, destination, names, clock=rt.clock)
        worker.drain()
        if not robot.wait_for(1, 10):
            console.print("[red]the local DingTalk robot received nothing[/]")
            return
        worst = max(opened, key=lambda c: ({"low": 0, "medium": 1, "high": 2}[c["severity"]], -c["id"]))
        robot.wait_for(len(opened), 5)
        card = next((r for r in robot.received if f"#{worst['id']}【" in r.text), robot.received[0])
        console.print(
            f"the local DingTalk robot accepted {len(robot.received)} signed message(s) "
            f"({len(robot.rejected)} rejected); case #{worst['id']}'s card, as staff see it:"
        )
        console.print(card.body.get("actionCard", {}).get("text", card.text), highlight=False)
        console.print("buttons: " + " | ".join(b["title"] for b in card.buttons), highlight=False)

        ack = next(b["actionURL"] for b in card.buttons if "/ack?" in b["actionURL"])
        path = ack.replace(rt.config.raw.server.public_url.rstrip("/"), "")
        case_id = int(re.search(r"/cases/(\d+)/", path).group(1))  # type: ignore[union-attr]
        client = TestClient(create_app(rt))
        page = client.get(path)
        console.print(
            f"GET {path.split('?')[0]}?t=… -> {page.status_code}: a confirm page (link previews change nothing); "
            f"case is still {service.get(case_id)['status']}"
        )
        token = re.search(r'name="t" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = client.post(path.split("?")[0], data={"t": token, "by": "王店长"})
        console.print(f"POST (the page's 确认受理 button) -> {done.status_code}")

    case = service.get(case_id)
    trail = Table("at (UTC)", "action", "who", "via", title=f"Case #{case_id}: {case['status']}, audit trail")
    for e in case["events"]:
        trail.add_row(f"{e['at']:%H:%M:%S}", e["action"], e["actor"], e["via"])
    console.print(trail)
    before = len(case["events"])
    active.sweep(case["ack_due_at"])  # the moment escalation would have started
    after = len(service.get(case_id)["events"])
    console.print(
        f"SLA sweep at the acknowledge deadline: {after - before} new step(s) for case #{case_id}: "
        "acknowledged, so nothing escalates (`cxhub cases`, `cxhub case show ID`)"
    )
