"""Survey invitations from decision to send, through the real customer destination connectors
(WeChat official account / mini-program via wechatpy, Alipay via its SDK's signing, Aliyun SMS)
against the fake platforms (``tests/kit/fakes.py``), with the real delivery worker on a fake clock.

Each message is checked against the platform's documented request: WeChat's fields
(``commands/demo/fake_wechat.problem``: touser / template_id / page / data of ``{"value": ..}``,
no other key) and Alipay's ``AlipayOpenAppMiniTemplatemessageSendModel`` (the SDK's request model).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kit.fakes import ALIYUN_SECRET, APP_SECRET, FakePlatform
from kit.surveys import SECRET, invitations_of, outbox_of

from commands.demo.fake_wechat import problem
from hub.features.surveys.stats import compute_stats
from hub.sdk.connector import RawRecord
from hub.sdk.testing import FakeClock

SH = "+08:00"
MAPPING = {
    "name": "checkout",
    "kind": "transaction",
    "fields": {
        "occurred_at": {"path": "paid_at", "type": "datetime"},
        "channel": {"path": "channel", "default": "pos"},
        "org.store": "store",
        "order.id": "receipt",
        "order.amount": {"path": "total", "type": "decimal"},
        "order.items": {"each": "items", "fields": {"name": "name", "category": "cat"}},
        "customer.identities": {"member_id": "member", "phone": "phone", "openid": "openid", "alipay_uid": "buyer"},
        "attributes.trade_no": "trade_no",
    },
}
MP_FIELDS = {"thing1": "{store_name}", "thing2": "{survey}", "time3": "{expires}", "thing4": "{body}"}
OA_FIELDS = {"first": "{survey}", "keyword1": "{store_name}", "remark": "有效期至{expires}"}
INTERNAL = {"token", "link", "expires", "channel", "page"}


def channel(kind: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, dict[str, Any]] = {
        "wechat_template": {"channel": "wechat_template", "destination": "wechat", "template": "TPL_OA", "fields": OA_FIELDS},
        "miniprogram": {"channel": "miniprogram", "destination": "mp", "template": "TPL_MP", "fields": MP_FIELDS},
        "alipay": {
            "channel": "alipay",
            "destination": "alipay",
            "template": "TPL_ALI",
            "fields": {"keyword1": "{store_name}", "keyword2": "{survey}"},
        },
        "sms": {"channel": "sms", "destination": "sms", "template": "SMS_1"},
    }  # fmt: skip
    return {**base[kind], **extra}


def config(rsa_private: str, channels: list[dict[str, Any]], **surveys: Any) -> dict[str, Any]:
    return {
        "secret_key": SECRET,
        "server": {"public_url": "https://cx.example.com"},
        "destinations": {
            "wechat": {
                "connector": "wechat_message",
                "options": {"app_id": "wx-oa", "app_secret": APP_SECRET, "api": "oa_template", "base_url": "https://wx"},
            },
            "mp": {
                "connector": "wechat_message",
                "options": {"app_id": "wx-mp", "app_secret": APP_SECRET, "api": "mp_subscribe", "base_url": "https://wx"},
            },
            "alipay": {
                "connector": "alipay_message",
                "options": {"app_id": "2021000000000001", "private_key": rsa_private, "gateway": "https://ali/gateway.do"},
            },
            "sms": {
                "connector": "sms",
                "options": {"access_key_id": "LTAI-test", "access_key_secret": ALIYUN_SECRET, "sign_name": "鲜超市",
                            "template_code": "SMS_1", "base_url": "https://sms"},
            },
        },
        "sources": {"pos": {"connector": "webhook", "options": {"secret": "whsec_dGVzdA=="}, "mapping": MAPPING}},
        "surveys": {
            "timezone": "Asia/Shanghai",
            "quiet_hours": {"start": "21:30", "end": "08:30"},
            "stores": {"S001": {"name": "徐汇店"}},
            "channels": channels,
            "rules": [{"name": "after_checkout", "questionnaire": "retail", "delay": "30m", "expires": "3d"}],
            **surveys,
        },
    }  # fmt: skip


def checkout(receipt: str, paid_at: datetime, **who: Any) -> dict[str, Any]:
    return {
        "receipt": receipt,
        "paid_at": paid_at.isoformat(),
        "store": "S001",
        "total": "60.00",
        "items": [{"name": "有机菠菜", "cat": "生鲜"}, {"name": "鲜牛奶 1L", "cat": "乳制品"}],
        **who,
    }


class Hub:
    """A runtime on the fake clock whose HTTP goes to the fake platforms, and its delivery worker."""

    def __init__(self, rt: Any, fake: FakePlatform, clock: FakeClock):
        from hub.features.delivery import build_worker

        self.rt, self.fake, self.clock = rt, fake, clock
        self.worker = build_worker(rt, concurrency=1)

    def ingest(self, *records: dict[str, Any]) -> None:
        raws = [RawRecord("pos", r["receipt"], r, self.clock()) for r in records]
        self.rt.ingestor.ingest("pos", self.rt.mapping("pos"), raws)

    def drain(self) -> Any:
        return self.worker.drain()

    def at(self, local: str) -> None:
        """Move the fake clock to a Shanghai wall-clock time (``2026-11-02T21:45``)."""
        self.clock.set(datetime.fromisoformat(local + SH).astimezone(UTC))

    def sent(self, api: str) -> list[dict[str, Any]]:
        return [a.body for a in self.fake.accepted if a.api == api]


@pytest.fixture
def make_hub(tmp_path: Path, clock: FakeClock, rsa_keys: tuple[str, str]) -> Iterator[Callable[..., Hub]]:
    from kit.runtime import build_runtime

    made: list[Any] = []

    def make(channels: list[dict[str, Any]], **surveys: Any) -> Hub:
        fake = FakePlatform(clock=clock, alipay_public_key=rsa_keys[1])
        rt = build_runtime(
            yaml.safe_dump(config(rsa_keys[0], channels, **surveys), allow_unicode=True, sort_keys=False),
            path=tmp_path / "cxhub.yaml",
            store=f"sqlite:///{tmp_path / 'cxhub.db'}",
            clock=clock,
            transport=httpx.MockTransport(fake.handler),
        )
        made.append(rt)
        return Hub(rt, fake, clock)

    yield make
    for rt in made:
        rt.close()


def _token_of(hub: Hub, inv_id: str, token: str) -> None:
    claims = hub.rt.features["surveys"].engine.signer.verify(token, check_expiry=False)
    assert claims.invitation_id == inv_id


# ---------------------------------------------------------------- the platforms' message formats


@pytest.mark.parametrize(
    ("page", "expected_prefix"),
    [(None, "pages/survey/index?token="), ("pages/cx/answer?from=msg", "pages/cx/answer?from=msg&token=")],
)
def test_mp_subscribe_sends_the_page_path_and_only_the_template_fields(
    make_hub: Callable[..., Hub], page: str | None, expected_prefix: str
) -> None:
    hub = make_hub([channel("miniprogram", **({"page": page} if page else {})), channel("sms")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="oMP0001", phone="13812345678"))
    hub.clock.advance(minutes=31)
    assert hub.drain().sent == 1
    [body] = hub.sent("wechat_cgi-bin_message_subscribe_send")
    assert problem("/cgi-bin/message/subscribe/send", body) is None  # WeChat's documented request
    assert body["touser"] == "oMP0001" and body["template_id"] == "TPL_MP"
    assert body["page"].startswith(expected_prefix) and "://" not in body["page"]
    [inv] = invitations_of(hub.rt)
    _token_of(hub, inv["id"], body["page"].rsplit("token=", 1)[1])
    assert set(body["data"]) == set(MP_FIELDS) and not set(body["data"]) & INTERNAL
    assert body["data"]["thing1"] == {"value": "徐汇店"}
    # 3 days after the send, Shanghai time, with the year a subscribe message's time field needs
    assert body["data"]["time3"] == {"value": "2026年11月05日 10:30"}
    # a thing field takes 20 characters: the invitation's text is cut to fit (WeChat refuses it whole)
    thing4 = body["data"]["thing4"]["value"]
    assert len(thing4) == 20 and thing4.endswith("…") and thing4.startswith("感谢您光临徐汇店")


def test_oa_template_sends_the_https_link_and_only_the_template_fields(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub([channel("wechat_template"), channel("sms")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="oOA0001"))
    hub.clock.advance(minutes=31)
    assert hub.drain().sent == 1
    [body] = hub.sent("wechat_cgi-bin_message_template_send")
    assert problem("/cgi-bin/message/template/send", body) is None
    assert body["url"].startswith("https://cx.example.com/s/")
    assert set(body["data"]) == set(OA_FIELDS)
    assert body["data"]["first"]["value"] and body["data"]["keyword1"] == {"value": "徐汇店"}


def test_alipay_message_carries_the_trade_number_as_form_id(make_hub: Callable[..., Hub]) -> None:
    from alipay.aop.api.domain.AlipayOpenAppMiniTemplatemessageSendModel import (
        AlipayOpenAppMiniTemplatemessageSendModel,
    )

    hub = make_hub([channel("alipay"), channel("sms")])
    hub.at("2026-11-02T10:00")
    trade_no = "2026110222001400001234567890"
    hub.ingest(checkout("R1", hub.clock(), buyer="2088102116773037", trade_no=trade_no, phone="13812345678"))
    hub.clock.advance(minutes=31)
    assert hub.drain().sent == 1
    [biz] = hub.sent("alipay")  # the fake verified the RSA2 signature of the request
    model = AlipayOpenAppMiniTemplatemessageSendModel.from_alipay_dict(biz)
    assert set(biz) == {"to_user_id", "form_id", "user_template_id", "page", "data"}
    assert model.to_user_id == "2088102116773037" and model.form_id == trade_no
    assert model.user_template_id == "TPL_ALI"
    assert model.page.startswith("pages/survey/index?token=")
    data = json.loads(model.data)
    assert data == {"keyword1": {"value": "徐汇店"}, "keyword2": {"value": data["keyword2"]["value"]}}


def test_alipay_without_a_trade_number_is_skipped_for_the_next_channel(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub([channel("alipay"), channel("sms")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), buyer="2088102116773037", phone="13812345678"))
    [inv] = invitations_of(hub.rt)
    assert inv["channel"] == "sms"
    assert any("alipay" in n and "trade_no" in n for n in inv["doc"]["notes"])
    hub.clock.advance(minutes=31)
    assert hub.drain().sent == 1
    [params] = hub.sent("sms")
    assert json.loads(params["TemplateParam"]) == {"link": outbox_of(hub.rt)[0]["message"]["url"]}


# ---------------------------------------------------------------- checked again at send time


def test_a_waiting_invitation_now_in_quiet_hours_waits_for_their_end(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub([channel("wechat_template")])
    hub.at("2026-11-02T20:50")
    hub.ingest(checkout("R1", hub.clock(), openid="oOA0001"))
    [inv] = invitations_of(hub.rt)
    assert inv["decision"] == "scheduled"  # due 21:20, before the quiet hours
    hub.at("2026-11-02T21:45")  # the worker was down: now it is quiet hours
    r = hub.drain()
    assert (r.sent, r.deferred) == (0, 1) and hub.sent("wechat_cgi-bin_message_template_send") == []
    [inv] = invitations_of(hub.rt)
    end = datetime.fromisoformat("2026-11-03T08:30" + SH)
    assert inv["send_at"] == end and "deferred to 2026-11-03 08:30" in inv["detail"]
    [row] = outbox_of(hub.rt)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, end)
    hub.at("2026-11-03T08:29")
    assert hub.drain().sent == 0
    hub.at("2026-11-03T08:31")
    assert hub.drain().sent == 1
    assert len(hub.sent("wechat_cgi-bin_message_template_send")) == 1


def test_an_invitation_whose_link_expired_while_waiting_is_not_sent(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(
        [channel("wechat_template")],
        rules=[{"name": "after_checkout", "questionnaire": "retail", "delay": "30m", "expires": "1h"}],
    )
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="oOA0001"))
    hub.at("2026-11-02T11:45")  # sent at 10:30, valid until 11:30
    r = hub.drain()
    assert (r.sent, r.dead) == (0, 1) and hub.fake.accepted == []
    [inv] = invitations_of(hub.rt)
    assert (inv["status"], inv["reason"]) == ("expired", "expired_unsent")
    assert "expired" in inv["detail"]
    [row] = outbox_of(hub.rt)
    assert row["status"] == "dead" and row["last_error"].startswith("not sent: its link expired")
    with hub.rt.store.connect() as conn:
        [stats] = compute_stats(conn)
    assert (stats["invited"], stats["unsent"], stats["unsent_by_reason"]) == (0, 1, {"expired_unsent": 1})


def test_an_invitation_of_a_customer_who_opted_out_meanwhile_is_not_sent(make_hub: Callable[..., Hub]) -> None:
    from sqlalchemy import update

    from hub.store.schema import customers

    hub = make_hub([channel("wechat_template")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="oOA0001"))
    [inv] = invitations_of(hub.rt)
    with hub.rt.store.begin() as conn:
        conn.execute(update(customers).where(customers.c.id == inv["customer_id"]).values(opted_out=True))
    hub.clock.advance(minutes=31)
    assert hub.drain().dead == 1 and hub.fake.accepted == []
    [inv] = invitations_of(hub.rt)
    assert (inv["status"], inv["reason"]) == ("cancelled", "opted_out")


@pytest.mark.parametrize(("openid", "code"), [("unsub0001", "43101"), ("bad0001", "40003")])
def test_a_permanent_refusal_falls_back_to_the_next_reachable_channel(
    make_hub: Callable[..., Hub], openid: str, code: str
) -> None:
    hub = make_hub([channel("wechat_template"), channel("sms")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid=openid, phone="13812345678"))
    hub.clock.advance(minutes=31)
    r = hub.drain()
    assert (r.dead, r.sent) == (1, 1)
    assert hub.fake.codes[f"wechat:{code}"] == 1
    [params] = hub.sent("sms")
    assert params["PhoneNumbers"] == "13812345678"
    [inv] = invitations_of(hub.rt)
    assert (inv["status"], inv["channel"], inv["destination"]) == ("pending", "sms", "sms")
    assert f"code {code}" in inv["detail"] and "fell back to sms" in inv["detail"]
    assert inv["outbox_key"].endswith(":sms")
    first, fallback = outbox_of(hub.rt)
    assert (first["status"], fallback["status"]) == ("dead", "sent")
    assert fallback["message"]["url"] == first["message"]["url"]  # the same link, the same expiry
    with hub.rt.store.connect() as conn:
        [stats] = compute_stats(conn)
    assert (stats["invited"], stats["unsent"]) == (1, 0)


def test_a_refusal_with_no_channel_left_under_its_caps_fails_and_leaves_the_response_rate(
    make_hub: Callable[..., Hub],
) -> None:
    hub = make_hub([channel("wechat_template"), channel("sms")], channel_caps={"sms": [{"max": 1, "per": "30d"}]})
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), phone="13812345678", member="M1"))  # SMS: the cap's one
    hub.clock.advance(minutes=31)
    assert hub.drain().sent == 1
    hub.at("2026-11-04T10:00")
    hub.ingest(checkout("R2", hub.clock(), openid="unsub0001", phone="13812345678", member="M1"))
    hub.clock.advance(minutes=31)
    r = hub.drain()
    assert (r.dead, r.sent) == (1, 0) and len(hub.sent("sms")) == 1
    second = next(i for i in invitations_of(hub.rt) if i["order_id"] == "R2")
    assert (second["status"], second["reason"]) == ("failed", "undeliverable")
    assert "code 43101" in second["detail"] and "sms capped (1/30d)" in second["detail"]
    with hub.rt.store.connect() as conn:
        [stats] = compute_stats(conn)
    assert (stats["invited"], stats["unsent"], stats["unsent_by_reason"]) == (1, 1, {"undeliverable": 1})


def test_a_message_that_runs_out_of_attempts_marks_its_invitation(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub([channel("wechat_template")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="oOA0001"))
    hub.fake.fail_next = 100  # an outage longer than every retry
    for _ in range(12):
        hub.clock.advance(hours=1)
        hub.drain()
    [row] = outbox_of(hub.rt)
    assert row["status"] == "dead"
    [inv] = invitations_of(hub.rt)
    assert (inv["status"], inv["reason"]) == ("failed", "undeliverable")
    assert "gave up after" in inv["detail"]
    assert timedelta(0) < hub.clock() - datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def test_replaying_the_dead_message_of_a_failed_invitation_sends_it_again(make_hub: Callable[..., Hub]) -> None:
    """Every path from decided to sent: `cxhub outbox retry --dead` after an outage makes the
    invitation live again, through the same send-time checks."""
    from hub.outbox.admin import retry

    hub = make_hub([channel("wechat_template")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="oOA0001"))
    hub.fake.fail_next = 100
    for _ in range(12):
        hub.clock.advance(hours=1)
        hub.drain()
    [inv] = invitations_of(hub.rt)
    assert inv["status"] == "failed"
    hub.fake.fail_next = 0
    hub.at("2026-11-03T12:00")
    with hub.rt.store.begin() as conn:
        assert retry(conn, now=hub.clock(), dead=True) == 1
    assert hub.drain().sent == 1
    [inv] = invitations_of(hub.rt)
    assert inv["status"] == "pending" and "replayed" in inv["detail"]
    with hub.rt.store.connect() as conn:
        [stats] = compute_stats(conn)
    assert (stats["invited"], stats["unsent"]) == (1, 0)


def test_replaying_the_first_message_after_a_fallback_does_not_message_twice(make_hub: Callable[..., Hub]) -> None:
    from hub.outbox.admin import retry

    hub = make_hub([channel("wechat_template"), channel("sms")])
    hub.at("2026-11-02T10:00")
    hub.ingest(checkout("R1", hub.clock(), openid="unsub0001", phone="13812345678"))
    hub.clock.advance(minutes=31)
    assert hub.drain().sent == 1  # by SMS, after WeChat refused
    with hub.rt.store.begin() as conn:
        assert retry(conn, now=hub.clock(), dead=True) == 1  # the refused WeChat message
    r = hub.drain()
    assert (r.sent, r.dead) == (0, 1) and hub.fake.codes["wechat:43101"] == 1
    first, _ = outbox_of(hub.rt)
    assert first["last_error"].startswith("not sent: superseded by survey:after_checkout:")
    [inv] = invitations_of(hub.rt)
    assert (inv["status"], inv["channel"]) == ("pending", "sms")
