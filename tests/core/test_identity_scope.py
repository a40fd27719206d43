"""Identities that belong to one app (an openid is per official account / mini-program): a mapping
says which with ``scope:`` (a literal, an expression, or the source's ``app_id`` option), ingest
stores it, and a survey channel limited to one app reaches that app's openids only, through the
real presets and ingest. SQLite and the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kit.runtime import build_runtime
from sqlalchemy import select

from hub.config import load_config
from hub.errors import ConfigError, MappingError, RecordError
from hub.features.surveys.schema import invitations
from hub.mapping import load_mapping_text
from hub.outbox.messages import recipients
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock
from hub.store import Store
from hub.store.schema import identities, outbox

OA, MP, OTHER = "wx0a00000000000001", "wx0b00000000000002", "wx0c00000000000003"


def mapping(scope: str) -> str:
    return f"""\
name: t
kind: transaction
fields:
  occurred_at: {{path: at, type: datetime}}
  customer.identities:
    member_id: member
    openid: {{path: openid, scope: {scope}}}
"""


# ---------------------------------------------------------------- the mapping


@pytest.mark.parametrize(
    ("scope", "expected"),
    [("appid", "wxAPP"), ("{const: wxLIT}", "wxLIT"), ("{path: app, lookup: {x: wxLOOK}}", "wxLOOK")],
)
def test_scope_is_a_literal_or_an_expression(scope: str, expected: str) -> None:
    m = load_mapping_text(mapping(scope), "t.yaml")
    payload = {"at": "2026-11-02T10:00:00+08:00", "member": "M1", "openid": "o1", "appid": "wxAPP", "app": "x"}
    for build in (m.build_doc, lambda p, **kw: m.interpret(p, kw["source"], kw["external_id"])):
        doc = build(payload, source="s", external_id="e")
        assert doc is not None
        assert doc["customer"]["identities"] == [
            {"namespace": "member_id", "value": "M1"},
            {"namespace": "openid", "scope": expected, "value": "o1"},
        ]
    ev = m.apply(payload, source="s", external_id="e")
    assert ev is not None and ev.customer.identities[1].scope == expected


def test_an_openid_without_its_app_is_rejected_naming_the_field() -> None:
    m = load_mapping_text(mapping("appid"), "t.yaml")
    with pytest.raises(
        RecordError, match=r"customer\.identities\.openid\.scope: the identity has a value but its scope"
    ):
        m.apply({"at": "2026-11-02T10:00:00+08:00", "openid": "o1"}, source="s", external_id="e")
    # no openid: nothing to scope
    ev = m.apply({"at": "2026-11-02T10:00:00+08:00", "member": "M1"}, source="s", external_id="e")
    assert ev is not None and [i.namespace for i in ev.customer.identities] == ["member_id"]


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ('""', "expected the app the identity belongs to"),
        ("{const: ''}", "an empty literal scope"),
        ("{option: app_id, path: x}", "`option:` names one option"),
        ("{pth: appid}", "unknown key(s) ['pth']"),
        ("'[bad'", "customer.identities.openid.scope"),
    ],
)
def test_a_bad_scope_is_a_clear_error_with_its_line(scope: str, message: str) -> None:
    with pytest.raises(MappingError) as exc:
        load_mapping_text(mapping(scope), "t.yaml")
    text = str(exc.value)
    assert message in text and "t.yaml:7" in text, text


def test_the_scope_option_is_bound_from_the_source(tmp_path: Path) -> None:
    cfg = load_config(text=CONFIG.format(oa_scope=OA, mp_scope=MP), path=str(tmp_path / "cxhub.yaml"))
    ev = cfg.sources["oa"].mapping.apply(oa_message("oUser", 1), source="oa", external_id="1")  # type: ignore[union-attr]
    assert ev is not None and ev.customer.identities[0].scope == OA
    # a source whose connector has no such option: a config error naming the source
    broken = CONFIG.format(oa_scope=OA, mp_scope=MP).replace("mapping: retail_checkout", RETAIL_WITH_OPTION)
    with pytest.raises(ConfigError, match=r"sources\.pos.*the scope is the source's option 'app_id', which is not set"):
        load_config(text=broken, path=str(tmp_path / "cxhub.yaml"))


RETAIL_WITH_OPTION = """mapping:
      name: pos
      kind: transaction
      fields:
        occurred_at: {path: paid_at, type: datetime}
        customer.identities: {openid: {path: member.openid, scope: {option: app_id}}}"""


# ---------------------------------------------------------------- ingest and reach

CONFIG = """\
secret_key: test-secret-key
server: {{public_url: "https://cx.example.com"}}
destinations:
  wechat_oa: {{connector: wechat_message, options: {{app_id: @OA@, app_secret: s, api: oa_template, template_id: TPL}}}}
  wechat_mp: {{connector: wechat_message, options: {{app_id: @MP@, app_secret: s, api: mp_subscribe, template_id: SUB}}}}
  sms: {{connector: sms, options: {{access_key_id: k, access_key_secret: s, sign_name: 鲜超市, template_code: SMS_1}}}}
sources:
  oa: {{connector: wechat_oa, mapping: wechat_oa, options: {{token: tok, app_id: @OA@}}}}
  mp: {{connector: wechat_mp, mapping: wechat_mp, options: {{token: tok, app_id: @MP@}}}}
  pos:
    connector: webhook
    mapping: retail_checkout
    options: {{secret: whsec_dGVzdA==, id_path: receipt_no}}
surveys:
  quiet_hours: {{start: "23:59", end: "00:00"}}
  channels:
    - {{channel: wechat_template, destination: wechat_oa, template: TPL, scope: {oa_scope}}}
    - {{channel: miniprogram, destination: wechat_mp, template: SUB, scope: {mp_scope}, page: pages/survey/index}}
    - {{channel: sms, destination: sms, template: SMS_1}}
  questionnaires: {{retail: retail}}
  rules:
    - {{name: after_checkout, questionnaire: retail, when: {{kind: transaction}}, delay: 30m, expires: 3d}}
""".replace("@OA@", OA).replace("@MP@", MP)


def oa_message(openid: str, n: int, to: str = "gh_oa") -> dict[str, Any]:
    """A text message as the official-account receiver parses it."""
    return {"ToUserName": to, "FromUserName": openid, "CreateTime": "1762048800", "MsgType": "text",
            "Content": "你好", "MsgId": str(n)}  # fmt: skip


def checkout(receipt: str, member: str, openid: str, appid: str) -> dict[str, Any]:
    """A POS checkout paid with WeChat Pay: the payer's openid and the AppID that issued it."""
    return {"receipt_no": receipt, "status": "PAID", "paid_at": "2026-11-02 10:00:00", "store": {"code": "S001"},
            "total": "60.00", "pay_method": "wechat", "member": {"number": member, "openid": openid, "appid": appid},
            "items": [{"sku": "1", "name": "鲜牛奶", "cat": "20", "qty": 1, "price": "60.00"}]}  # fmt: skip


def ingest(rt: Any, source: str, ext: str, payload: dict[str, Any]) -> None:
    res = rt.ingestor.ingest(source, rt.mapping(source), [RawRecord(source, ext, payload, rt.clock())])
    assert res.stored == 1, res


def decisions(rt: Any) -> dict[str, tuple[str | None, str | None, str | None]]:
    """order id -> (channel, destination, message to)."""
    with rt.store.connect() as conn:
        to = {r.key: recipients(r.message["to"]) for r in conn.execute(select(outbox.c.key, outbox.c.message))}
        to = {k: v[0] if len(v) == 1 else v for k, v in to.items()}
        rows = conn.execute(select(invitations.c.order_id, invitations.c.channel, invitations.c.destination,
                                   invitations.c.reason, invitations.c.outbox_key)).all()  # fmt: skip
    return {r.order_id: (r.channel or r.reason, r.destination, to.get(r.outbox_key)) for r in rows}


def test_a_channel_of_one_app_reaches_that_apps_openids_only(tmp_path: Path, store: Store, clock: FakeClock) -> None:
    rt = build_runtime(CONFIG.format(oa_scope=OA, mp_scope=MP), path=tmp_path / "cxhub.yaml", store=store, clock=clock)
    try:
        # the official account hears from oOA1; later a checkout paid in the official account
        # (WeChat Pay, appid OA) carries the same openid and a member number: one customer
        ingest(rt, "oa", "m1", oa_message("oOA1", 1))
        ingest(rt, "pos", "R1", checkout("R1", "M1", "oOA1", OA))
        # a mini-program customer: its openid is also heard by the mini-program receiver
        ingest(rt, "mp", "m2", {**oa_message("oMP2", 2, to="gh_mp"), "MsgType": "text"})
        ingest(rt, "pos", "R2", checkout("R2", "M2", "oMP2", MP))
        # an openid of some other app of the brand: no channel of this config can use it
        ingest(rt, "pos", "R3", checkout("R3", "M3", "oX3", OTHER))
        with rt.store.connect() as conn:
            ids = {
                (r.scope, r.value): r.customer_id for r in conn.execute(select(identities)) if r.namespace == "openid"
            }
            members = {r.value: r.customer_id for r in conn.execute(select(identities)) if r.namespace == "member_id"}
        assert set(ids) == {(OA, "oOA1"), (MP, "oMP2"), (OTHER, "oX3")}  # the push sources scoped them too
        assert ids[(OA, "oOA1")] == members["M1"] and ids[(MP, "oMP2")] == members["M2"]
        assert decisions(rt) == {
            "R1": ("wechat_template", "wechat_oa", "oOA1"),
            "R2": ("miniprogram", "wechat_mp", "oMP2"),  # never the official account's template API
            "R3": ("unreachable", None, None),
        }
    finally:
        rt.close()


def test_a_channel_without_a_scope_is_never_offered_an_apps_openids(
    tmp_path: Path, store: Store, clock: FakeClock
) -> None:
    text = CONFIG.format(oa_scope=OA, mp_scope=MP).replace(f"template: TPL, scope: {OA}", "template: TPL")
    rt = build_runtime(text, path=tmp_path / "cxhub.yaml", store=store, clock=clock)
    try:
        ingest(rt, "pos", "R1", checkout("R1", "M1", "oOA1", OA))
        ingest(rt, "pos", "R2", checkout("R2", "M2", "oMP2", MP))
        got = decisions(rt)
        assert got["R1"] == ("unreachable", None, None)  # an unscoped channel: unscoped openids only
        assert got["R2"] == ("miniprogram", "wechat_mp", "oMP2")
    finally:
        rt.close()
