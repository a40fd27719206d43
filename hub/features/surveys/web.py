"""The hosted survey page: ``GET /s/{token}`` shows the invitation's questions, ``POST`` stores them.

Server-rendered (Jinja2), mobile first; it works without JavaScript (a few inline lines only
untick the other options when an exclusive one such as "没有遇到问题" is ticked, and the server
checks that anyway). Answers are validated here, on the server;
a valid submission becomes a ``survey_response`` touchpoint through the Ingestor (dedup on the
invitation id, identity resolution, ingest hooks: feedback rules see low scores at once). A bad,
tampered, expired or used link gets a clear page with the right status, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select, update

from hub.features.surveys.schema import UNSENT_STATUSES, invitations
from hub.features.surveys.tokens import TokenError
from hub.sdk.connector import RawRecord
from hub.store.schema import customers

if TYPE_CHECKING:
    from hub.features.surveys import SurveysFeature
    from hub.runtime import Runtime

log = logging.getLogger("cxhub.surveys.web")

TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))

#: what each kind of unusable link shows (status, title, text)
PROBLEMS: dict[str, tuple[int, str, str]] = {
    "malformed": (404, "链接无效", "这个问卷链接不完整或已损坏。请直接点击消息中的链接打开。"),
    "tampered": (403, "链接无效", "这个问卷链接无法验证，可能被修改过。请直接点击消息中的链接打开。"),
    "unknown": (404, "链接无效", "没有找到这份问卷邀请。"),
    "expired": (410, "问卷已过期", "这份问卷的填写时间已经结束。感谢您的关注！"),
    "used": (410, "您已提交过", "这份问卷已经提交过了，每个链接只能提交一次。感谢您的反馈！"),
    "error": (503, "暂时无法提交", "系统繁忙，您的答案暂未保存。请稍后刷新页面再试一次。"),
    "unreadable": (400, "无法读取提交内容", "提交的内容不完整或无法读取，答案未保存。请回到问卷页面重新提交。"),
}


#: what the survey page answers besides 200, for the OpenAPI description (hub/operator.py)
PAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": "; ".join(sorted({t for st, t, _ in PROBLEMS.values() if st == status}))}
    for status in sorted({st for st, _, _ in PROBLEMS.values()})
}
PAGE_ANSWERS[422] = {"description": "answers missing or out of range: the form again, with what to fix"}


def render(name: str, **ctx: Any) -> str:
    """Render a template of ``hub/features/surveys/templates``."""
    return _env.get_template(name).render(**ctx)


# ---------------------------------------------------------------- validation


def validate_answers(
    questions: Sequence[Mapping[str, Any]], form: Mapping[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a submitted form against the composed questions.

    ``form`` maps field names (``q_<id>``) to every value sent. Returns (answers, errors), both
    keyed by question id; answers hold ints for scored questions, a list for multiple choice.
    """
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for q in questions:
        qid, qtype = q["id"], q["type"]
        values = [v.strip() for v in form.get(f"q_{qid}", []) if v is not None]
        values = [v for v in values if v]
        required = bool(q.get("required", qtype != "text"))
        if qtype in ("nps", "csat", "ces", "rating"):
            low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}.get(qtype, (1, int(q.get("scale", 5))))
            if not values:
                if required:
                    errors[qid] = "请选择一个分数"
                continue
            if len(values) > 1 or not values[0].lstrip("-").isdigit():
                errors[qid] = f"请在 {low}-{high} 之间选择一个分数"
                continue
            n = int(values[0])
            if not low <= n <= high:
                errors[qid] = f"请在 {low}-{high} 之间选择一个分数"
                continue
            answers[qid] = n
        elif qtype in ("single", "multiple"):
            allowed = [o["value"] for o in q.get("options", [])]
            if not values:
                if required or q.get("min_choices", 0):
                    errors[qid] = "请至少选择一项"
                continue
            if any(v not in allowed for v in values) or len(set(values)) != len(values):
                errors[qid] = "请从给出的选项中选择"
                continue
            if qtype == "single":
                if len(values) != 1:
                    errors[qid] = "请只选择一项"
                    continue
                answers[qid] = values[0]
            else:
                alone = [o for o in q.get("options", []) if o.get("exclusive") and o["value"] in values]
                if alone and len(values) > 1:
                    errors[qid] = f"「{alone[0]['label']}」不能与其他选项同时选择"
                    continue
                most = q.get("max_choices")
                if most and len(values) > most:
                    errors[qid] = f"最多选择 {most} 项"
                    continue
                if len(values) < q.get("min_choices", 0):
                    errors[qid] = f"请至少选择 {q['min_choices']} 项"
                    continue
                answers[qid] = [v for v in allowed if v in values]  # option order, not click order
        else:
            text = "\n".join(values)
            if not text:
                if required:
                    errors[qid] = "请填写此项"
                continue
            limit = int(q.get("max_length", 500))
            if len(text) > limit:
                errors[qid] = f"最多 {limit} 个字（现在 {len(text)} 个）"
                continue
            answers[qid] = text
    return answers, errors


def response_payload(inv: Mapping[str, Any], answers: Mapping[str, Any], submitted_at: Any) -> dict[str, Any]:
    """The raw record the hosted page stores (mapped by ``mappings/survey_page.yaml``): the answers
    with the first NPS / CSAT / CES question lifted into the touchpoint's feedback."""
    doc = inv["doc"]
    questions = doc.get("questions", [])
    rows = []
    lifted: dict[str, Any] = {}
    texts = []
    for q in questions:
        if q["id"] not in answers:
            continue
        value = answers[q["id"]]
        rows.append(
            {
                "id": q["id"],
                "type": q["type"],
                "text": q["text"],
                "value": value,
                "block": q.get("block"),
                "block_title": q.get("block_title"),  # what staff read: 生鲜 2/5, not the block's id
            }
        )
        if q["type"] in ("nps", "csat", "ces"):
            lifted.setdefault(q["type"], value)
        elif q["type"] == "text":
            texts.append(value)
    return {
        "invitation_id": inv["id"],
        "transaction_id": inv["transaction_id"],
        "rule": inv["rule"],
        "questionnaire": inv["questionnaire"],
        "customer_id": inv["customer_id"],
        "channel": inv["channel"],
        "brand": doc.get("brand"),
        "store": inv["store"],
        "store_name": doc.get("store_name"),
        "order_id": inv["order_id"],
        "submitted_at": submitted_at,
        "locale": doc.get("locale", "zh-CN"),
        "blocks": doc.get("blocks", []),
        "answers": rows,
        "text": "\n".join(texts) or None,
        **lifted,
    }


# ---------------------------------------------------------------- routes


def router(rt: Runtime, feature: SurveysFeature) -> APIRouter:
    """The ``/s/{token}`` routes for a runtime."""
    api = APIRouter()
    page = feature.config.page

    def brand(inv: Mapping[str, Any] | None) -> dict[str, Any]:
        """The name the customer knows: the configured brand, else the store's name (never ours)."""
        store = (inv or {}).get("doc", {}).get("store_name") if inv else None
        return {"brand": page.brand_name or store or "", "accent": page.accent_color}

    def problem(kind: str, inv: Mapping[str, Any] | None = None) -> HTMLResponse:
        status, title, text = PROBLEMS[kind]
        return HTMLResponse(render("message.html", title=title, text=text, kind=kind, **brand(inv)), status_code=status)

    def load(token: str) -> dict[str, Any] | tuple[str, dict[str, Any] | None]:
        """The invitation of a usable token, or the kind of problem (with the invitation when known)."""
        now = rt.clock()
        try:
            inv_id: str | None = feature.engine.signer.verify(token, now).invitation_id
            kind = None
        except TokenError as exc:  # an expired token is genuine: its invitation still names the store
            inv_id, kind = exc.invitation_id, exc.reason
        row = None
        if inv_id:
            with rt.store.connect() as conn:
                row = conn.execute(select(invitations).where(invitations.c.id == inv_id)).mappings().first()
        inv = None if row is None else dict(row)
        if kind is not None:
            return kind, inv
        if inv is None or inv["decision"] == "suppressed":
            return "unknown", None
        if inv["status"] == "responded":
            return "used", inv
        if inv["status"] in UNSENT_STATUSES or (inv["expires_at"] is not None and inv["expires_at"] <= now):
            return "expired", inv
        return inv

    def form_page(inv: dict[str, Any], token: str, values: Mapping[str, Any], errors: Mapping[str, str]) -> str:
        doc = inv["doc"]
        base = brand(inv)
        return render(
            "survey.html",
            title=doc.get("title") or "问卷",
            intro=doc.get("intro"),
            questions=doc.get("questions", []),
            values=values,
            errors=errors,
            action=f"/s/{token}",
            **base,
        )

    async def invitation(token: str) -> Any:
        """The invitation behind ``token``, or the clear page to show instead (never a stack trace)."""
        try:
            inv = await run_in_threadpool(load, token)
        except Exception:
            log.exception("survey page: loading an invitation failed")
            return problem("error")
        return problem(*inv) if isinstance(inv, tuple) else inv

    @api.get("/s/{token}", response_class=HTMLResponse, responses=PAGE_ANSWERS)
    async def show(token: str) -> HTMLResponse:
        inv = await invitation(token)
        if isinstance(inv, HTMLResponse):
            return inv
        if inv["opened_at"] is None:
            try:  # the console's funnel counts opened invitations; the page never fails for it
                await run_in_threadpool(_mark_opened, rt, inv["id"])
            except Exception:
                log.warning("survey page: recording that invitation %s was opened failed", inv["id"], exc_info=True)
        return HTMLResponse(form_page(inv, token, {}, {}))

    @api.post("/s/{token}", response_class=HTMLResponse, responses=PAGE_ANSWERS)
    async def submit(token: str, request: Request) -> HTMLResponse:
        inv = await invitation(token)
        if isinstance(inv, HTMLResponse):
            return inv
        try:
            form = await request.form(max_files=0, max_fields=200)
        except Exception:  # cut off (the client went, a listener limit) or not a form: nothing is stored
            # and the invitation stays usable; an empty submission would use it up with no answers
            return problem("unreadable", inv)
        fields: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, []).append(value[:10_000])
        answers, errors = validate_answers(inv["doc"].get("questions", []), fields)
        if errors:
            return HTMLResponse(form_page(inv, token, fields, errors), status_code=422)
        opt_out = bool(fields.get("opt_out"))
        try:
            stored = await run_in_threadpool(_store, rt, feature, inv, answers, opt_out)
        except Exception:
            log.exception("survey page: storing the answers of invitation %s failed", inv["id"])
            return problem("error", inv)
        if not stored:
            return problem("used", inv)
        return HTMLResponse(
            render(
                "message.html",
                title="提交成功",
                text=inv["doc"].get("thanks") or "感谢您的反馈！",
                kind="thanks",
                opted_out=opt_out,
                **brand(inv),
            )
        )

    return api


def _mark_opened(rt: Runtime, invitation_id: str) -> None:
    """The first time the page of an invitation is shown (``opened_at``)."""
    with rt.store.begin() as conn:
        conn.execute(
            update(invitations)
            .where(invitations.c.id == invitation_id, invitations.c.opened_at.is_(None))
            .values(opened_at=rt.clock())
        )


def _store(rt: Runtime, feature: SurveysFeature, inv: dict[str, Any], answers: dict[str, Any], opt_out: bool) -> bool:
    """Ingest the response (one transaction with its hooks); True unless it was already stored."""
    now = rt.clock()
    source = feature.config.page.source
    record = RawRecord(source, inv["id"], response_payload(inv, answers, now.isoformat()), now)
    result = rt.ingestor.ingest(source, feature.page_mapping, [record])
    if result.quarantined:
        raise RuntimeError(f"the survey_page mapping rejected the response of invitation {inv['id']}")
    if opt_out and inv["customer_id"]:
        with rt.store.begin() as conn:
            conn.execute(update(customers).where(customers.c.id == inv["customer_id"]).values(opted_out=True))
    return result.stored == 1
