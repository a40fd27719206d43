"""Staff action pages: ``GET /cases/{id}/{action}?t=...`` shows the case and a confirm button;
``POST`` (the button) acts.

Why not act on the GET: DingTalk, WeCom and Feishu fetch links pasted in chats to build previews,
and mail / security scanners open links too. A GET that acknowledged would let a robot acknowledge
a case nobody read, and escalation would stop. So the link opens a page (one tap), the page's big
button acts (second tap), with the person's name, which is required: a link carries no identity,
and "受理人：链接" tells nobody who acted. Cards with callbacks (Feishu ``card.action.trigger``,
WeCom ``template_card_event``, DingTalk interactive cards) are a true single tap: their callback is
a signed platform request that names the user who pressed (see ``card_actions``).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from hub.errors import SignatureError
from hub.features.feedback.render import SEVERITY_ZH, STATUS_ZH, customer_line, order_line, score_line

if TYPE_CHECKING:
    from hub.features.feedback.cases import CaseService

ACTION_ZH = {"ack": "确认受理", "resolve": "标记已解决", "not_negative": "标记不是差评", "view": "查看"}
#: what the page says once an action went through
DONE_ZH = {"ack": "已确认受理", "resolve": "已解决", "not_negative": "已标记为不是差评，工单已结束"}
#: the states each page action applies to
ALLOWED: dict[str, tuple[str, ...]] = {
    "ack": ("new",),
    "resolve": ("new", "acknowledged"),
    "not_negative": ("new", "acknowledged"),
}

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">
<title>{title}</title><style>
body{{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;padding:16px;background:#f5f6f7;color:#1f2329}}
.card{{background:#fff;border-radius:12px;padding:16px;max-width:520px;margin:auto;box-shadow:0 1px 3px #0001}}
h1{{font-size:18px;margin:0 0 12px}} dl{{margin:0}} dt{{color:#8f959e;font-size:13px;margin-top:8px}} dd{{margin:2px 0 0}}
.sev{{font-size:13px;padding:2px 8px;border-radius:10px;background:#f2f3f5;vertical-align:middle}}
.sev-high{{color:#d83931;background:#fde2e2}} .msg{{padding:10px;border-radius:8px;background:#e8f3ff;margin:12px 0}}
.warn{{padding:10px;border-radius:8px;background:#fff1e8;color:#b2450c;margin:12px 0}} .err{{color:#d83931}}
button{{width:100%;padding:14px;font-size:17px;border:0;border-radius:10px;background:#1677ff;color:#fff;margin-top:16px}}
input{{width:100%;box-sizing:border-box;padding:10px;font-size:15px;border:1px solid #dee0e3;border-radius:8px}}
</style></head><body><div class="card">{content}</div></body></html>"""


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _local(dt: datetime | None, tz: str) -> str:
    return dt.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M") if dt else ""


def state_line(case: dict[str, Any], now: datetime | None) -> str:
    """``待受理 · 已超时 12 分钟 · 已升级至 华东大区`` (status, overdue, escalation level)."""
    parts = [STATUS_ZH.get(case["status"], case["status"])]
    if now is not None:
        due = case["ack_due_at"] if case["status"] == "new" else case.get("resolve_due_at")
        if case["status"] in ("new", "acknowledged") and due is not None and due < now:
            minutes = int((now - due).total_seconds() // 60)
            what = "受理" if case["status"] == "new" else "解决"
            parts.append(
                f"{what}已超时 {minutes // 60} 小时 {minutes % 60} 分钟"
                if minutes >= 60
                else f"{what}已超时 {minutes} 分钟"
            )
    levels = case["doc"].get("levels") or []
    if case.get("level") and 0 < case["level"] < len(levels):
        parts.append(f"已升级至 {levels[case['level']]['label']}")
    return " · ".join(parts)


def case_page(
    case: dict[str, Any],
    tz: str,
    *,
    action: str | None,
    token: str | None,
    message: str | None,
    now: datetime | None = None,
    error: str | None = None,
) -> str:
    """The HTML page for a case; with ``action`` and ``token``, a form that POSTs the action (and
    asks who acts: the trail must name a person, a link carries no identity)."""
    s = case["doc"]["summary"]
    sev = case["severity"]
    rows = [
        ("状态", state_line(case, now)),
        ("门店", s.get("store_name") or s.get("store")),
        ("评分", score_line(s)),
        ("分项", "、".join(s.get("categories") or [])),
        ("内容", s.get("text")),
        ("顾客", customer_line(s)),
        ("订单", order_line(s) if s.get("order_id") else None),
        ("受理时限", _local(case["ack_due_at"], tz)),
        ("解决时限", _local(case.get("resolve_due_at"), tz) if case["status"] == "acknowledged" else None),
        (
            "受理人",
            f"{case['acknowledged_by']} · {_local(case['acknowledged_at'], tz)}" if case["acknowledged_by"] else None,
        ),
        ("解决人", f"{case['resolved_by']} · {_local(case['resolved_at'], tz)}" if case["resolved_by"] else None),
    ]
    parts = [
        f'<h1>差评 #{case["id"]} <span class="sev sev-{sev}">严重程度：{_esc(SEVERITY_ZH.get(sev, sev))}</span></h1>'
    ]
    if message:
        parts.append(f'<div class="msg">{_esc(message)}</div>')
    overdue = "超时" in rows[0][1] or "升级" in rows[0][1]
    if overdue and case["status"] in ("new", "acknowledged"):
        parts.append(f'<div class="warn">{_esc(rows[0][1])}</div>')
    parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{_esc(v)}</dd>" for k, v in rows if v) + "</dl>")
    if action and token:
        parts.append(
            f'<form method="post" action="/cases/{case["id"]}/{action}">'
            f'<input type="hidden" name="t" value="{_esc(token)}">'
            "<dt>您的姓名（必填，记入处理记录）</dt>"
            '<input name="by" maxlength="40" autocomplete="name" required>'
            + (f'<div class="err">{_esc(error)}</div>' if error else "")
            + f'<button type="submit">{ACTION_ZH[action]}</button></form>'
        )
    return _PAGE.format(title=f"差评 #{case['id']}", content="".join(parts))


def done_text(status: str) -> str:
    """``此工单已解决`` / ``此工单处理中``: the status names already read as states."""
    return f"此工单{STATUS_ZH.get(status, status)}"


#: what a staff link answers besides 200, for the OpenAPI description (hub/operator.py)
LINK_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: {"description": "the link's signature is wrong or it expired"},
    404: {"description": "no such action or case"},
    422: {"description": "the form misses the staff member's name, or a parameter is malformed"},
}


def _error_page(status: int, text: str) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title="链接无效", content=f"<h1>{_esc(text)}</h1>"), status_code=status)


def build_router(service: CaseService, tz: str) -> APIRouter:
    """The FastAPI router ``cxhub run`` mounts."""
    router = APIRouter()

    def _check(case_id: int, action: str, t: str) -> HTMLResponse | None:
        try:
            service.signer.verify(case_id, action, t, service.clock())
        except SignatureError as exc:
            text = "链接已过期，请在最新的通知里操作" if "expired" in exc.reason else "链接无效"
            return _error_page(403, text)
        return None

    def _load(case_id: int) -> dict[str, Any] | None:
        from hub.features.feedback.cases import CaseNotFound

        try:
            return service.get(case_id)
        except CaseNotFound:
            return None

    @router.get("/cases/{case_id}/{action}", response_class=HTMLResponse, responses=LINK_ANSWERS)
    async def show(case_id: int, action: str, t: str = Query(default="")) -> HTMLResponse:
        if action not in ACTION_ZH:
            return _error_page(404, "没有这个操作")
        bad = _check(case_id, action, t)
        if bad is not None:
            return bad
        case = await run_in_threadpool(_load, case_id)
        if case is None:
            return _error_page(404, "没有这个差评工单")
        form = action if case["status"] in ALLOWED.get(action, ()) else None
        done = None if form or action == "view" else done_text(case["status"])
        return HTMLResponse(case_page(case, tz, action=form, token=t, message=done, now=service.clock()))

    @router.post("/cases/{case_id}/{action}", response_class=HTMLResponse, responses=LINK_ANSWERS)
    async def act(case_id: int, action: str, t: str = Form(default=""), by: str = Form(default="")) -> HTMLResponse:
        from hub.features.feedback.cases import CaseNotFound

        if action not in ALLOWED:
            return _error_page(404, "没有这个操作")
        bad = _check(case_id, action, t)
        if bad is not None:
            return bad
        actor = " ".join(by.split())[:40]
        if not actor:
            # a link is no identity: "受理人：链接" tells nobody who acted, so the name is required
            case = await run_in_threadpool(_load, case_id)
            if case is None:
                return _error_page(404, "没有这个差评工单")
            if case["status"] not in ALLOWED[action]:  # already done: nothing to ask
                text = f"{done_text(case['status'])}，无需重复操作"
                return HTMLResponse(case_page(case, tz, action=None, token=None, message=text, now=service.clock()))
            page = case_page(
                case, tz, action=action, token=t, message=None, now=service.clock(), error="请填写您的姓名再提交"
            )
            return HTMLResponse(page, status_code=422)
        try:
            result = await run_in_threadpool(service.transition, case_id, action, actor=actor, via="link")
        except CaseNotFound:
            return _error_page(404, "没有这个差评工单")
        text = DONE_ZH[action] if result.changed else f"{done_text(result.case['status'])}，无需重复操作"
        case = await run_in_threadpool(service.get, case_id)
        # after acknowledging, offer "resolved" right away with a fresh signed token
        nxt = None
        token = None
        if case["status"] == "acknowledged":
            nxt = "resolve"
            exp = datetime.fromtimestamp(int(t.split(".")[0]), tz=service.clock().tzinfo)
            token = service.signer.token(case_id, "resolve", exp)
        return HTMLResponse(case_page(case, tz, action=nxt, token=token, message=text, now=service.clock()))

    return router
