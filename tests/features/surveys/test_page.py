"""The hosted survey page over HTTP (FastAPI TestClient), tokens, and external responses."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kit.surveys import checkout, ingest, invitations_of, outbox_of
from sqlalchemy import select

from hub.features.surveys.tokens import TokenError, TokenSigner
from hub.features.surveys.web import validate_answers
from hub.store.schema import customers, touchpoints

# ---------------------------------------------------------------- tokens


def test_tokens_are_short_signed_bound_and_expiring() -> None:
    signer = TokenSigner(b"k1")
    inv = str(uuid.uuid4())
    exp = datetime(2026, 11, 5, tzinfo=UTC)
    token = signer.sign(inv, exp)
    assert len(token) == 50
    claims = signer.verify(token, exp - timedelta(seconds=1))
    assert (claims.invitation_id, claims.expires_at) == (inv, exp)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, exp)
    assert signer.verify(token, check_expiry=False).invitation_id == inv
    with pytest.raises(TokenError, match="tampered"):
        TokenSigner(b"k2").verify(token, exp - timedelta(days=1))  # another deployment's key
    # moving the expiry (or the invitation) breaks the signature
    body, mac = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "="))
    raw[-1] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode() + "." + mac
    with pytest.raises(TokenError, match="tampered"):
        signer.verify(forged, exp - timedelta(days=1))
    for bad in ("", "abc", "x" * 50, token[:-1], token + "A", token.replace(".", "")):
        with pytest.raises(TokenError):
            signer.verify(bad, exp - timedelta(days=1))


# ---------------------------------------------------------------- validation


QUESTIONS = [
    {"id": "nps", "type": "nps", "text": "推荐?", "required": True},
    {"id": "csat", "type": "csat", "text": "满意?", "required": True},
    {"id": "stars", "type": "rating", "text": "打分", "scale": 5, "required": False},
    {
        "id": "pick",
        "type": "single",
        "text": "?",
        "options": [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}],
    },
    {
        "id": "many",
        "type": "multiple",
        "text": "?",
        "required": False,
        "max_choices": 2,
        "options": [{"value": v, "label": v} for v in "xyz"],
    },
    {"id": "note", "type": "text", "text": "?", "required": False, "max_length": 10},
]


@pytest.mark.parametrize(
    ("form", "answers", "errors"),
    [
        (
            {"q_nps": ["9"], "q_csat": ["4"], "q_pick": ["a"]},
            {"nps": 9, "csat": 4, "pick": "a"},
            {},
        ),
        ({"q_csat": ["4"], "q_pick": ["a"]}, {"csat": 4, "pick": "a"}, {"nps": "请选择一个分数"}),
        ({"q_nps": ["11"], "q_csat": ["0"], "q_pick": ["a"]}, {"pick": "a"}, {"nps": "0-10", "csat": "1-5"}),
        ({"q_nps": ["x"], "q_csat": ["3", "4"], "q_pick": ["c"]}, {}, {"nps": "0-10", "csat": "1-5", "pick": "选项"}),
        ({"q_nps": ["0"], "q_csat": ["1"], "q_pick": ["a", "b"]}, {"nps": 0, "csat": 1}, {"pick": "只选择一项"}),
        (
            {"q_nps": ["10"], "q_csat": ["5"], "q_pick": ["b"], "q_many": ["z", "x"], "q_stars": ["5"]},
            {"nps": 10, "csat": 5, "pick": "b", "many": ["x", "z"], "stars": 5},
            {},
        ),
        (
            {"q_nps": ["10"], "q_csat": ["5"], "q_pick": ["b"], "q_many": ["x", "y", "z"], "q_stars": ["6"]},
            {"nps": 10, "csat": 5, "pick": "b"},
            {"many": "最多选择 2 项", "stars": "1-5"},
        ),
        (
            {"q_nps": ["7"], "q_csat": ["3"], "q_pick": ["a"], "q_note": ["  好  "]},
            {"nps": 7, "csat": 3, "pick": "a", "note": "好"},
            {},
        ),
        ({"q_nps": ["7"], "q_csat": ["3"], "q_pick": ["a"], "q_note": ["太长了" * 4]}, None, {"note": "最多 10 个字"}),
    ],
)
def test_server_side_validation(
    form: dict[str, list[str]], answers: dict[str, Any] | None, errors: dict[str, str]
) -> None:
    got, errs = validate_answers(QUESTIONS, form)
    if answers is not None:
        assert got == answers
    assert set(errs) == set(errors)
    for qid, text in errors.items():
        assert text in errs[qid]


# ---------------------------------------------------------------- the page


def invited(make_runtime: Any, clock: Any, **kw: Any) -> tuple[Any, TestClient, dict[str, Any], str]:
    rt = make_runtime(**kw)  # store=... picks the backend
    ingest(rt, checkout("R1"))
    [inv] = invitations_of(rt)
    url = outbox_of(rt)[0]["message"]["url"]
    token = url.rsplit("/", 1)[1]
    from hub.web import create_app

    return rt, TestClient(create_app(rt)), inv, token


def answers_form(nps: int = 3) -> dict[str, Any]:
    return {
        "q_nps": str(nps),
        "q_overall": "2",
        "q_dairy_freshness": "2",
        "q_dairy_cold_chain": "不够冷",
        "q_fresh_quality": "4",
        "q_fresh_issue": ["价格偏高", "不够新鲜"],
        "q_comment": "牛奶快过期了",
    }


def test_page_shows_the_composed_questions(make_runtime: Any, clock: Any) -> None:
    _rt, client, _inv, token = invited(make_runtime, clock)
    r = client.get(f"/s/{token}")
    assert r.status_code == 200, r.text
    html = r.text
    assert "感谢您光临徐汇店" in html and "鲜牛奶 1L、有机菠菜" in html
    assert "您对所购生鲜的新鲜程度满意吗？" in html and "乳制品" in html
    assert html.index("dairy_freshness") < html.index("fresh_quality")  # ordered by basket share
    assert "电子产品" not in html and "bakery" not in html
    # works without JavaScript (the server checks every answer); the one inline script only unticks
    # the other options when an exclusive one is ticked; nothing is loaded from anywhere
    assert html.lower().count("<script") == 1 and "<script src" not in html.lower()
    assert 'name="viewport"' in html


def test_submit_stores_a_linked_survey_response(make_runtime: Any, clock: Any, store: Any) -> None:
    """On SQLite and on the real PostgreSQL."""
    rt, client, inv, token = invited(make_runtime, clock, store=store)
    clock.advance(minutes=45)
    r = client.post(f"/s/{token}", data=answers_form(nps=3))
    assert r.status_code == 200, r.text
    assert "提交成功" in r.text
    with rt.store.connect() as conn:
        rows = conn.execute(select(touchpoints).where(touchpoints.c.kind == "survey_response")).mappings().all()
    [row] = rows
    doc = row["doc"]
    assert row["customer_id"] == inv["customer_id"]  # resolved to the invited customer
    assert doc["feedback"]["nps"] == 3 and doc["feedback"]["csat"] == 2
    assert doc["feedback"]["text"] == "牛奶快过期了"
    assert doc["order"]["id"] == "R1" and doc["org"]["store"] == "S001"
    assert doc["attributes"]["transaction_id"] == inv["transaction_id"]
    assert doc["attributes"]["invitation_id"] == inv["id"]
    answers = {a["id"]: a["value"] for a in doc["attributes"]["answers"]}
    assert answers["fresh_issue"] == ["不够新鲜", "价格偏高"] or answers["fresh_issue"] == ["价格偏高", "不够新鲜"]
    assert doc["channel"] == "sms"
    [after] = invitations_of(rt)
    assert after["status"] == "responded" and after["response_id"] == row["id"]
    # single use: the link now says so, for GET and POST
    for resp in (client.get(f"/s/{token}"), client.post(f"/s/{token}", data=answers_form(9))):
        assert resp.status_code == 410 and "您已提交过" in resp.text


def test_invalid_answers_are_shown_again_with_messages(make_runtime: Any, clock: Any) -> None:
    rt, client, _inv, token = invited(make_runtime, clock)
    form = answers_form()
    form["q_nps"] = "12"
    del form["q_overall"]
    r = client.post(f"/s/{token}", data=form)
    assert r.status_code == 422
    assert "请在 0-10 之间选择一个分数" in r.text and "请选择一个分数" in r.text
    assert 'value="不够冷" id="q_dairy_cold_chain_2" checked' in r.text  # what was entered stays
    with rt.store.connect() as conn:
        assert conn.execute(select(touchpoints).where(touchpoints.c.kind == "survey_response")).first() is None
    assert client.post(f"/s/{token}", data=answers_form()).status_code == 200


@pytest.mark.parametrize(
    ("mangle", "status", "text"),
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), 403, "链接无效"),
        (lambda t: t[:20], 404, "链接无效"),
        (lambda t: "../../etc/passwd", 404, "Not Found"),
        (lambda t: "%00%ff", 404, "链接无效"),
    ],
)
def test_tampered_and_malformed_links_get_a_clear_page(
    make_runtime: Any, clock: Any, mangle: Any, status: int, text: str
) -> None:
    _rt, client, _inv, token = invited(make_runtime, clock)
    for method in ("get", "post"):
        r = getattr(client, method)(f"/s/{mangle(token)}")
        assert r.status_code == status
        assert text in r.text and "Traceback" not in r.text


def test_expired_link(make_runtime: Any, clock: Any) -> None:
    _rt, client, inv, token = invited(make_runtime, clock)
    clock.set(inv["expires_at"] + timedelta(seconds=1))
    r = client.get(f"/s/{token}")
    assert r.status_code == 410 and "问卷已过期" in r.text


def test_a_genuine_token_of_a_suppressed_invitation_is_refused(make_runtime: Any, clock: Any) -> None:
    rt, client, _inv, _token = invited(make_runtime, clock)
    signer = rt.features["surveys"].engine.signer
    forged_for_unknown = signer.sign(str(uuid.uuid4()), clock() + timedelta(days=1))
    assert client.get(f"/s/{forged_for_unknown}").status_code == 404


def test_opt_out_from_the_page_stops_later_invitations(make_runtime: Any, clock: Any) -> None:
    rt, client, inv, token = invited(make_runtime, clock)
    r = client.post(f"/s/{token}", data={**answers_form(9), "opt_out": "1"})
    assert r.status_code == 200 and "不会再向您发送" in r.text
    with rt.store.connect() as conn:
        assert conn.execute(select(customers.c.opted_out).where(customers.c.id == inv["customer_id"])).scalar_one()
    clock.advance(days=10)
    ingest(rt, checkout("R2", clock().isoformat()))
    assert invitations_of(rt)[-1]["reason"] == "opted_out"


def test_store_failure_shows_a_retry_page_not_a_trace(make_runtime: Any, clock: Any, monkeypatch: Any) -> None:
    rt, client, _inv, token = invited(make_runtime, clock)

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(rt.ingestor, "ingest", boom)
    r = client.post(f"/s/{token}", data=answers_form())
    assert r.status_code == 503 and "暂时无法提交" in r.text and "database" not in r.text


# ---------------------------------------------------------------- external survey tools


def test_external_tool_response_through_the_signed_webhook(make_runtime: Any, clock: Any) -> None:
    """An external tool echoes cxhub's token: its response marks the invitation answered."""
    from kit.surveys import config_text
    from standardwebhooks.webhooks import Webhook

    rt = make_runtime()
    ingest(rt, checkout("R1"))
    token = outbox_of(rt)[0]["message"]["url"].rsplit("/", 1)[1]
    # a second runtime over the same store with a webhook source using the preset mapping
    import yaml

    from hub.config import load_config
    from hub.runtime import Runtime
    from hub.web import create_app

    data = yaml.safe_load(config_text())
    secret = "whsec_" + base64.b64encode(b"survey-tool-secret").decode()
    data["sources"]["wjx"] = {"connector": "webhook", "mapping": "survey_webhook", "options": {"secret": secret}}
    path = rt.config.base_dir / "with_webhook.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = load_config(path)
    cfg.raw.store.url = rt.store.url
    rt2 = Runtime(cfg, clock=clock)
    try:
        client = TestClient(create_app(rt2))
        body = json.dumps(
            {
                "response_id": "wjx-1",
                "survey_id": "s1",
                "submitted_at": clock().isoformat(),
                "context": {"token": token, "store": "S001", "order_id": "R1"},
                "scores": {"nps": 10, "csat": 5},
                "comment": "很好",
            },
            ensure_ascii=False,
        )
        ts = datetime.fromtimestamp(int(time.time()), UTC)
        clock.set(ts)
        sig = Webhook(secret).sign("msg-1", ts, body)
        headers = {"webhook-id": "msg-1", "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": sig}
        r = client.post("/hooks/wjx", content=body.encode(), headers={**headers, "content-type": "application/json"})
        assert r.status_code == 200, r.text
        [inv] = invitations_of(rt)
        assert inv["status"] == "responded"
        bad = client.post(
            "/hooks/wjx",
            content=body.encode(),
            headers={**headers, "webhook-signature": "v1,AAAA", "content-type": "application/json"},
        )
        assert bad.status_code in (401, 403)
    finally:
        rt2.close()


# ---------------------------------------------------------------- stats


def test_stats_nps_csat_ces_and_response_rate(make_runtime: Any, clock: Any, store: Any) -> None:
    from hub.features.surveys.stats import ces, compute_stats, csat, nps

    assert nps([10, 9, 8, 7, 6, 0]) == 0.0  # 2 promoters, 2 detractors of 6
    assert nps([10, 10, 9, 3]) == 50.0
    assert nps([]) is None
    assert csat([5, 4, 3, 2, 1]) == 40.0
    assert ces([7, 6, 2]) == 5.0

    rt = make_runtime(store=store)
    from hub.web import create_app

    client = TestClient(create_app(rt))
    scores = [10, 9, 3, None]  # the fourth customer does not answer
    for i, score in enumerate(scores):
        ingest(rt, checkout(f"R{i}", member=f"M{i}", phone=f"1390000000{i}"))
        if score is not None:
            token = outbox_of(rt)[-1]["message"]["url"].rsplit("/", 1)[1]
            r = client.post(f"/s/{token}", data={**answers_form(score), "q_overall": str(min(5, score // 2 + 1))})
            assert r.status_code == 200
    ingest(rt, checkout("ANON", member=None, phone=None))
    with rt.store.connect() as conn:
        [overall] = compute_stats(conn, by=None)
        by_cat = {g["group"]: g for g in compute_stats(conn, by="category")}
        by_channel = {g["group"]: g for g in compute_stats(conn, by="channel")}
        later = compute_stats(conn, by="store", since=clock() + timedelta(days=1))
    assert overall["invited"] == 4 and overall["suppressed"] == 1 and overall["responses"] == 3
    assert overall["suppressed_by_reason"] == {"unreachable": 1}
    assert overall["response_rate"] == 0.75
    assert overall["nps"] == round((2 - 1) / 3 * 100, 1)
    assert overall["csat"] == round(2 / 3 * 100, 1)  # overall answers 5, 5, 2
    assert set(by_cat) == {"生鲜", "乳制品"} and by_cat["生鲜"]["responses"] == 3
    assert by_channel["sms"]["responses"] == 3 and by_channel["(none)"]["suppressed"] == 1
    assert later == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("&".join(f"f{i}=1" for i in range(201)).encode(), "application/x-www-form-urlencoded"),  # too many
        (b"q_nps=9", "multipart/form-data"),  # no boundary
    ],
)
def test_a_body_that_cannot_be_read_stores_nothing_and_keeps_the_invitation(
    make_runtime: Any, clock: Any, body: bytes, content_type: str
) -> None:
    """A cut-off or broken body is not an empty submission: the invitation stays open."""
    rt, client, inv, token = invited(make_runtime, clock)
    r = client.post(f"/s/{token}", content=body, headers={"content-type": content_type})
    assert r.status_code == 400 and "答案未保存" in r.text
    assert invitations_of(rt)[0]["status"] == inv["status"] and inv["status"] != "responded"
    assert client.post(f"/s/{token}", data=answers_form()).status_code == 200
