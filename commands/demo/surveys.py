"""The surveys step of ``cxhub demo``: checkout -> invitation with category blocks -> delivered to
WeChat (the real delivery worker and ``wechat_message`` connector, against the local fake WeChat of
``commands/demo/fake_wechat.py``) -> answered survey (the real hosted page through the FastAPI app)
-> NPS.

The invitations were decided by the rules engine while step 1 ingested the checkouts (it is an
ingest hook). If the demo config has no ``surveys:`` rules, the step evaluates the stored checkouts
with ``DEMO_SURVEYS`` below instead -- exactly what the hook would have done -- and says so.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

#: used only when the demo config has no survey rules (see docs/surveys.md for the config)
DEMO_SURVEYS: dict[str, Any] = {
    "quiet_hours": {"start": "21:30", "end": "08:30"},
    "stores": {"S001": {"name": "徐汇店"}, "S002": {"name": "静安店"}, "S003": {"name": "浦东店"}},
    "caps": [{"max": 1, "per": "7d"}],
    # evaluated after the demo's reviews opened cases; at checkout time there were none
    "exclusions": {"open_case": {"enabled": False}},
    "channels": [
        {
            "channel": "wechat_template",
            "destination": "wechat",
            "template": "SURVEY_TPL",
            "fields": {
                "first": "{survey}",
                "keyword1": "{store_name}",
                "keyword2": "{items}",
                "remark": "有效期至{expires}",
            },
        },
        {"channel": "sms", "destination": "sms", "template": "SMS_SURVEY"},
    ],
    "rules": [
        {
            "name": "after_checkout",
            "questionnaire": "retail",
            "when": {"kind": "transaction", "amount": {"min": 10}},
            "delay": "30m",
            "expires": "3d",
        }
    ],
}


def _engine(rt: Any, console: Console) -> Any:
    feature = rt.features.get("surveys")
    if feature is not None and feature.config.rules:
        return feature.engine
    from hub.features.surveys.config import SurveysConfig
    from hub.features.surveys.engine import SurveyEngine
    from hub.features.surveys.questionnaire import load_questionnaires
    from hub.model import TouchpointEvent
    from hub.store.schema import touchpoints

    console.print(
        "[yellow]the demo config has no `surveys:` rules; evaluating the stored checkouts with the "
        "built-in demo rules (commands/demo/surveys.py DEMO_SURVEYS)[/]"
    )
    cfg = SurveysConfig.model_validate(DEMO_SURVEYS)
    qs = load_questionnaires(
        cfg.questionnaires, [r.questionnaire for r in cfg.rules], rt.config.base_dir, rt.config.lines
    )
    engine = SurveyEngine(cfg, qs, secret_key=rt.config.secret_key, public_url=rt.config.raw.server.public_url)
    now = rt.clock()
    with rt.store.begin() as conn:
        docs = conn.execute(
            select(touchpoints.c.doc).where(touchpoints.c.kind == "transaction").order_by(touchpoints.c.occurred_at)
        )
        for (doc,) in docs.all():
            ev = TouchpointEvent.model_validate(doc)
            rule = engine.rule_for(ev)
            if rule is not None:
                engine.consider(conn, ev, rule, now)
    return engine


def _deliver(rt: Any, console: Console, scenario: dict[str, Any]) -> None:
    """Send the WeChat invitations through the delivery worker to the demo's local fake WeChat."""
    from datetime import timedelta

    from hub.features.delivery import build_worker
    from hub.features.surveys.schema import invitations
    from hub.privacy import mask_identity

    wechat = scenario.get("wechat")
    if wechat is None or "wechat" not in rt.config.destinations:
        return
    with rt.store.connect() as conn:
        due = [
            r.send_at
            for r in conn.execute(
                select(invitations.c.send_at).where(
                    invitations.c.destination == "wechat", invitations.c.status == "pending"
                )
            )
            if r.send_at is not None
        ]
    if not due:
        return
    # the invitations are due `delay` after the checkout (and after the quiet hours, at night): the
    # worker's clock is moved to the last one's send time instead of making you wait for it
    start = rt.clock()
    skip = max(timedelta(0), max(due) - start) + timedelta(minutes=1)
    worker = build_worker(rt, clock=lambda: rt.clock() + skip, concurrency=1)
    worker.destinations = ["wechat"]  # the demo's SMS gateway is not played locally
    result = worker.drain()
    later = (
        f" (clock moved forward {skip.total_seconds() / 3600:.1f} h to the send time)"
        if skip.total_seconds() > 90
        else ""
    )
    console.print(
        f"delivery worker -> fake WeChat at {wechat.base_url}{later}: sent {result.sent}, "
        f"{wechat.tokens_issued} access token(s) from /cgi-bin/stable_token",
        highlight=False,
    )
    table = Table("API", "to (openid)", "template", "fields", "link", title="Delivered to the (fake) WeChat")
    for m in wechat.received:
        fields = "; ".join(f"{k}={v}" for k, v in m.fields.items())
        link = str(m.body.get("url") or m.body.get("page") or "")
        table.add_row(m.api, mask_identity("openid", m.body["touser"]), m.body["template_id"], fields, link[:34] + "…")
    console.print(table)
    if wechat.rejected:
        console.print(f"[yellow]the fake WeChat refused: {wechat.rejected}[/]")


def demo_step(rt: Any, console: Console, scenario: dict[str, Any] | None = None) -> None:
    """Show invitations, answer two surveys on the hosted page, print NPS / CSAT."""
    from fastapi.testclient import TestClient

    from hub.features.surveys.schema import invitations
    from hub.features.surveys.stats import compute_stats, list_invitations
    from hub.privacy import mask_text
    from hub.store.schema import outbox, touchpoints
    from hub.web import create_app

    console.rule("[bold]Surveys: checkout -> invitation -> delivered to (fake) WeChat -> answered survey -> NPS")
    _engine(rt, console)
    with rt.store.connect() as conn:
        rows = sorted(list_invitations(conn, now=rt.clock(), limit=100), key=lambda r: r["order_id"] or "")
    table = Table("order", "store", "decision", "channel", "to", "blocks / why", title="Survey invitations")
    for r in rows:
        table.add_row(
            r["order_id"] or "",
            r["store"] or "",
            r["decision"] + (f" ({r['reason']})" if r["reason"] else ""),
            r["channel"] or "",
            r["recipient"] or "",
            r["detail"] if r["decision"] == "suppressed" else ", ".join(r["blocks"] or []),
        )
    console.print(table)
    sent = [r for r in rows if r["decision"] != "suppressed"]
    if not sent:
        console.print("[yellow]no invitation was sent, nothing to answer[/]")
        return
    with rt.store.connect() as conn:
        first = conn.execute(select(invitations).where(invitations.c.id == sent[0]["id"])).mappings().one()
        keys = {r.id: r.outbox_key for r in conn.execute(select(invitations.c.id, invitations.c.outbox_key))}
        messages = {
            row.key: row.message
            for row in conn.execute(select(outbox.c.key, outbox.c.message).where(outbox.c.key.like("survey:%")))
        }
    console.print(f"[bold]{first['order_id']}[/] basket shares: {first['doc'].get('shares')}")
    for i, q in enumerate(first["doc"]["questions"], 1):
        block = f"[green][{q.get('block_title')}][/] " if q.get("block") else ""
        console.print(f"  {i}. {block}{q['text']} ({q['type']})", highlight=False)
    msg = messages[keys[first["id"]]]
    console.print(f"outbox message: {msg['title']} / {mask_text(msg['body'].splitlines()[0])}", highlight=False)
    _deliver(rt, console, scenario or {})

    answers = [
        (
            sent[0],
            {"nps": "3", "overall": "2", "comment": "鲜牛奶快过期了，冷柜温度也不够"},
        ),
        *[(inv, {"nps": "10", "overall": "5"}) for inv in sent[1:3]],
    ]
    with TestClient(create_app(rt)) as client:
        for inv, picks in answers:
            msg = messages[keys[inv["id"]]]
            path = "/s/" + msg["url"].rsplit("/", 1)[1]
            page = client.get(path)
            with rt.store.connect() as conn:
                questions = conn.execute(select(invitations.c.doc).where(invitations.c.id == inv["id"])).scalar_one()[
                    "questions"
                ]
            form: dict[str, Any] = {}
            for q in questions:  # answer every question the way this customer would
                if q["id"] in picks:
                    form[f"q_{q['id']}"] = picks[q["id"]]
                elif q["type"] in ("nps", "csat", "ces", "rating"):
                    form[f"q_{q['id']}"] = "4" if picks["nps"] == "10" else "2"
                elif q["type"] == "single":
                    form[f"q_{q['id']}"] = q["options"][0]["value"]
            r = client.post(path, data=form)
            console.print(
                f"GET {path[:14]}… -> {page.status_code}; POST answers (NPS {picks['nps']}) -> {r.status_code}",
                highlight=False,
            )
        again = client.post(path, data=form)
        tampered = client.get(path[:-2] + ("AA" if not path.endswith("AA") else "BB"))
        console.print(
            f"the same link again -> {again.status_code} (single use); a tampered link -> {tampered.status_code}"
        )
    with rt.store.connect() as conn:
        n = conn.execute(select(touchpoints.c.id).where(touchpoints.c.kind == "survey_response")).all()
        overall = compute_stats(conn)[0]
        by_cat = compute_stats(conn, by="category")
    console.print(f"{len(n)} survey_response touchpoints stored, linked to their transactions and customers")
    st = Table("group", "invited", "responses", "rate", "NPS", "CSAT %", title="cxhub stats (overall, by category)")
    for g in [overall, *by_cat]:
        rate = "-" if g["response_rate"] is None else f"{g['response_rate']:.0%}"
        st.add_row(
            str(g["group"]),
            str(g["invited"]),
            str(g["responses"]),
            rate,
            "-" if g["nps"] is None else str(g["nps"]),
            "-" if g["csat"] is None else str(g["csat"]),
        )
    console.print(st)
