"""What staff read: a masked case summary taken when the case opens, and the Chinese message for
each notification (new case, pre-breach warning, escalation, reminder, resolve deadline).

Personal data is masked here, once, before it is stored on the case: the customer's name (张**),
phone numbers inside the review text (138****5678); the customer id is never shown.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from hub.features.feedback.sla import format_left
from hub.model import EventKind, Order, TouchpointEvent
from hub.privacy import mask_identity, mask_name, mask_text
from hub.sdk.connector import Button, OutboundMessage
from hub.store.schema import touchpoints

SEVERITY_ZH = {"high": "高", "medium": "中", "low": "低"}
STATUS_ZH = {"new": "待受理", "acknowledged": "处理中", "resolved": "已解决", "closed": "已关闭"}
KIND_TITLE = {
    "open": "差评预警",
    "update": "差评追加",
    "warn": "即将超时",
    "escalate": "差评升级",
    "remind": "超时提醒",
    "resolve_warn": "处理即将超时",
    "resolve_breach": "处理超时",
}
CHANNEL_ZH = {
    "meituan": "美团",
    "dianping": "大众点评",
    "eleme": "饿了么",
    "taobao": "淘宝",
    "tmall": "天猫",
    "jd": "京东",
    "douyin": "抖音",
    "wechat": "微信",
    "miniprogram": "小程序",
    "alipay": "支付宝",
    "store": "门店",
    "app": "App",
    # survey channels: a low score in a survey answer
    "wechat_template": "微信问卷",
    "wechat_subscribe": "微信问卷",
    "sms": "短信问卷",
    "email": "邮件问卷",
    "dingtalk": "钉钉",
    "feishu": "飞书",
    "wecom": "企业微信",
    "web": "网页",
}
#: when the channel has no name above: what kind of touchpoint it was (never a raw code to staff)
KIND_ZH = {
    "review": "顾客评价",
    "survey_response": "问卷",
    "message": "顾客消息",
    "service_contact": "客服记录",
    "transaction": "交易",
    "refund": "退款",
}
EXCERPT_CHARS = 120


def order_of(conn: Connection, event: TouchpointEvent) -> Order | None:
    """The order ``event`` is about, with its amount and items: the event's own when it carries
    them, else the same customer's transaction with that order id, stored by an earlier batch (a
    review or a survey answer names the order; the checkout that the POS sent has what was bought;
    this batch's rows may not be written yet: the hook says it never reads them)."""
    order = event.order
    if order is None or not order.id or (order.amount is not None and order.items):
        return order
    if not event.customer.customer_id:
        return order
    q = (
        select(touchpoints.c.doc)
        .where(
            touchpoints.c.customer_id == event.customer.customer_id,
            touchpoints.c.kind == EventKind.transaction.value,
        )
        .order_by(touchpoints.c.occurred_at.desc())
        .limit(200)
    )
    for (doc,) in conn.execute(q):
        found = (doc or {}).get("order") or {}
        if found.get("id") == order.id:
            return Order.model_validate(found)
    return order


def category_scores(event: TouchpointEvent) -> list[str]:
    """The customer's per-category answers of a survey: ``["生鲜 2/5", "乳制品 4/5"]`` (the hosted
    page stores each answer with the block it belongs to)."""
    out: list[str] = []
    scale = {"csat": 5, "rating": 5, "ces": 7}
    for row in event.attributes.get("answers") or []:
        if not isinstance(row, dict) or not row.get("block") or row.get("type") not in scale:
            continue
        value = row.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float | str) or not str(value).isdigit():
            continue
        # the block's title (生鲜); a page that stored none: the question itself, never the block's id
        label = row.get("block_title") or _short(str(row.get("text") or "")) or row["block"]
        out.append(f"{label} {value}/{row.get('scale') or scale[row['type']]}")
    return out


def _short(text: str, limit: int = 16) -> str:
    text = text.strip().rstrip("？?")
    return text if len(text) <= limit else text[:limit] + "…"


def case_summary(event: TouchpointEvent, store_name: str | None, order: Order | None = None) -> dict[str, Any]:
    """The masked facts of the touchpoint that opened (or joined) a case (``order``: the order
    with its amount and items, from :func:`order_of`)."""
    fb = event.feedback
    cust = event.customer
    order = order or event.order
    text = mask_text((fb.text or "").strip()) if fb else ""
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS] + "…"
    return {
        "touchpoint_id": event.id,
        "source": event.source,
        "kind": event.kind.value,
        "channel": event.channel,
        "occurred_at": event.occurred_at.isoformat(),
        "brand": event.org.brand,
        "region": event.org.region,
        "store": event.org.store,
        "store_name": store_name or event.org.store_name or event.org.store,
        "rating": None if fb is None or fb.rating is None else str(fb.rating),
        "rating_scale": fb.rating_scale if fb else None,
        "rating5": None if fb is None or fb.rating5 is None else str(fb.rating5),
        "nps": fb.nps if fb else None,
        "csat": fb.csat if fb else None,
        "ces": fb.ces if fb else None,
        "text": text,
        "customer": _who(event),
        "member_level": cust.member_level,
        "order_id": order.id if order else None,
        "amount": None if order is None or order.amount is None else str(order.amount),
        "items": [i.name for i in (order.items if order else []) if i.name][:3],
        "categories": category_scores(event),
    }


_ID_LABEL = {"member_id": "会员号", "phone": "手机", "mobile": "手机", "platform_user": "用户", "openid": "微信用户"}


def _who(event: TouchpointEvent) -> str:
    """The customer as staff may see them: a masked name, else one masked identity."""
    cust = event.customer
    if cust.name:
        return mask_name(cust.name)
    for ns in _ID_LABEL:
        for ident in cust.identities:
            if ident.namespace == ns and not ident.value.startswith("h:"):  # hashed: nothing to show
                return f"{_ID_LABEL[ns]} {mask_identity(ns, ident.value)}"
    if cust.member_level:
        return "会员"
    # a known customer with nothing staff may see (hashed phone only): say so, not "顾客：顾客"
    return "已识别顾客（无可显示的信息）" if cust.customer_id else "匿名顾客"


def _stars(rating5: str | None) -> str:
    if rating5 is None:
        return ""
    n = max(0, min(5, round(Decimal(rating5))))
    return "★" * n + "☆" * (5 - n)


def score_line(s: dict[str, Any]) -> str:
    """``★☆☆☆☆ 1/5 · NPS 3`` (whatever scores the touchpoint had)."""
    parts = []
    if s.get("rating") is not None:
        parts.append(f"{_stars(s.get('rating5'))} {s['rating']}/{s['rating_scale']}")
    if s.get("nps") is not None:
        parts.append(f"NPS {s['nps']}")
    if s.get("csat") is not None:
        parts.append(f"满意度 {s['csat']}/5")
    if s.get("ces") is not None:
        parts.append(f"费力度 {s['ces']}/7")
    return " · ".join(parts) or "无评分"


def customer_line(s: dict[str, Any]) -> str:
    """``张**（金卡会员）``."""
    who = s.get("customer") or "匿名顾客"
    level = s.get("member_level")
    if level and who == "会员":
        return f"{level}会员"
    return who + (f"（{level}会员）" if level else "")


def order_line(s: dict[str, Any]) -> str:
    """``R-00001 ¥86.50（鲜牛奶 1L、有机菠菜）``."""
    amount = f" ¥{Decimal(s['amount']):.2f}" if s.get("amount") else ""
    items = f"（{'、'.join(s['items'])}）" if s.get("items") else ""
    return f"{s['order_id']}{amount}{items}"


def channel_label(s: dict[str, Any]) -> str:
    """Where the customer said it, in Chinese: never a raw channel code."""
    return CHANNEL_ZH.get(s.get("channel") or "") or KIND_ZH.get(s.get("kind") or "", "其他渠道")


def _local(iso_or_dt: str | datetime, tz: str) -> str:
    dt = datetime.fromisoformat(iso_or_dt) if isinstance(iso_or_dt, str) else iso_or_dt
    return dt.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def render_message(
    *,
    key: str,
    kind: str,
    case: dict[str, Any],
    now: datetime,
    tz: str,
    links: dict[str, str],
    level_label: str | None = None,
    to: list[str] | None = None,
    mention: list[str] | None = None,
    card_values: dict[str, dict[str, Any]] | None = None,
) -> OutboundMessage:
    """The notification for ``case`` (a row of ``cases`` as a dict)."""
    s: dict[str, Any] = case["doc"]["summary"]
    sev = SEVERITY_ZH.get(case["severity"], case["severity"])
    where = s.get("store_name") or "未知门店"
    # the title is the card's one heading (robots print it as "### title"); the body has none
    title = f"【{KIND_TITLE[kind]}·{sev}】{where} {score_line(s)}"
    lines = [f"**工单 #{case['id']}** · 严重程度：{sev}"]
    if kind == "escalate" and level_label:
        lines.append(f"> 超时未受理，已升级至 **{level_label}**")
    if kind == "remind":
        lines.append("> 仍无人受理，请尽快处理")
    if kind == "update":
        lines.append(f"> 同一顾客再次反馈（共 {case.get('touchpoints', 1)} 条）")
    lines += [
        f"- **门店**：{where}" + (f"（{s['store']}）" if s.get("store") and s["store"] != where else ""),
        f"- **评分**：{score_line(s)}",
    ]
    if s.get("categories"):
        lines.append(f"- **分项**：{'、'.join(s['categories'])}")
    if s.get("text"):
        lines.append(f"- **内容**：“{s['text']}”")
    lines.append(f"- **顾客**：{customer_line(s)}")
    if s.get("order_id"):
        lines.append(f"- **订单**：{order_line(s)}")
    lines.append(f"- **来源**：{channel_label(s)} · {_local(s['occurred_at'], tz)}")
    reasons = case["doc"].get("reasons") or []
    if any(r.startswith("alarm") for r in reasons):
        lines.append(f"- **预警词**：{'、'.join(case['doc'].get('keywords') or [])}")
    # the detector's topics and the words that made the text negative (docs/model.md)
    bad_topics = [t["name"] for t in case["doc"].get("topics") or [] if t.get("polarity") == "negative"]
    if bad_topics:
        lines.append(f"- **问题类别**：{'、'.join(bad_topics)}")
    if case["doc"].get("why"):
        lines.append(f"- **判定依据**：{case['doc']['why']}")
    if case["status"] == "new":
        due = case["ack_due_at"]
        lines.append(f"- **受理时限**：{format_left(due, now)}（{_local(due, tz)} 前）")
    else:
        due = case["resolve_due_at"]
        lines.append(f"- **解决时限**：{format_left(due, now)}（{_local(due, tz)} 前）")
    values = card_values or {}
    buttons = []
    # ack / resolve carry their signed callback value: a single tap on cards that call back; the
    # link stays for destinations without callbacks (group robots), where the page asks a name
    if case["status"] == "new" and "ack" in links:
        buttons.append(Button("确认受理", links["ack"], values.get("ack")))
    if "resolve" in links:
        buttons.append(Button("已解决", links["resolve"], values.get("resolve")))
    if case["status"] in ("new", "acknowledged") and "not_negative" in links:
        # the detector was wrong: one tap ends the case and teaches the next model (verdicts)
        buttons.append(Button("不是差评", links["not_negative"], values.get("not_negative")))
    if "view" in links:
        buttons.append(Button("查看详情", links["view"]))
    return OutboundMessage(
        key=key,
        title=title,
        body="\n".join(lines),
        to=list(to or []),
        buttons=buttons,
        mention=list(mention or []),
        data={
            "case_id": case["id"],
            "severity": case["severity"],
            "kind": kind,
            # for card platforms with callbacks (Feishu card.action.trigger, DingTalk cards): the value
            # each button carries back; the token inside is checked like a link's
            "card_actions": values,
        },
        url=links.get("view"),
    )
