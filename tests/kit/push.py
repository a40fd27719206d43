"""Test kit for the push receiver: credentials (the golden vectors' are the published ones), the
hub config with one source per push connector, and a running hub to look into."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hub.runtime import Runtime
from hub.sdk.testing import FakeClock
from hub.store.schema import inbox, quarantine, touchpoints
from hub.web import create_app
from kit.runtime import build_runtime

# --- golden vectors' credentials (published in the platforms' samples and SDK tests)
OA_TOKEN = "spamtest"  # official WXBizMsgCrypt Python sample
OA_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OA_APPID = "wx2c2769f8efd9abc2"
WECOM_TOKEN = "123456"  # wechatpy tests/test_crypto.py
WECOM_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WECOM_CORP_ID = "wx49f0ab532d5d035a"
DING_TOKEN = "mryue"  # open-dingtalk/DingTalk-Callback-Crypto DingCallbackCrypto3.py
DING_AES_KEY = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
DING_APP_KEY = "ding6ccabc44d2c8d38b"
FEISHU_ENCRYPT_KEY = "kudryavka"  # Feishu encryption doc example (decrypted in feishu-python-sdk tests)
FEISHU_TOKEN = "GzhQEyfUcx7eEungQFWtXgCbxSpUOJIb"
# --- our own
MP_TOKEN = "mp-token"
MP_AES_KEY = base64.b64encode(os.urandom(32)).decode()[:43]
MP_APPID = "wxmp0000000000001"
PLAIN_TOKEN = "plain-token"
FEISHU_PLAIN_TOKEN = "feishu-plain-token"
ALIPAY_APP_ID = "2021000000000001"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"generic-webhook-secret-for-tests").decode()

SECRETS = [
    OA_TOKEN,
    OA_AES_KEY,
    WECOM_AES_KEY,
    DING_AES_KEY,
    FEISHU_ENCRYPT_KEY,
    FEISHU_TOKEN,
    MP_AES_KEY,
    WEBHOOK_SECRET,
]


@dataclass(frozen=True)
class RsaPair:
    """An app-side key pair standing in for Alipay's: the private key signs like Alipay does."""

    private_pkcs1: str
    public_pem: str


def new_rsa_pair() -> RsaPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return RsaPair(private, public)


def hub_config(store_url: str, public_key_pem: str, window: float = 300) -> str:
    indented = "\n".join("          " + ln for ln in public_key_pem.strip().splitlines())
    return f"""
secret_key: test-secret-key
store: {{url: "{store_url}"}}
server: {{replay_window_seconds: {window}, max_body_bytes: 65536}}
sources:
  oa:
    connector: wechat_oa
    options: {{token: {OA_TOKEN}, encoding_aes_key: {OA_AES_KEY}, app_id: {OA_APPID}}}
  oa_plain:
    connector: wechat_oa
    options: {{token: {PLAIN_TOKEN}, app_id: wxplain}}
  mp:
    connector: wechat_mp
    options: {{token: {MP_TOKEN}, encoding_aes_key: "{MP_AES_KEY}", app_id: {MP_APPID}}}
  wecom:
    connector: wecom
    options: {{token: "{WECOM_TOKEN}", encoding_aes_key: {WECOM_AES_KEY}, corp_id: {WECOM_CORP_ID}}}
  ding:
    connector: dingtalk_events
    options: {{token: {DING_TOKEN}, encoding_aes_key: {DING_AES_KEY}, app_key: {DING_APP_KEY}}}
  feishu:
    connector: feishu_events
    options: {{verification_token: {FEISHU_TOKEN}, encrypt_key: {FEISHU_ENCRYPT_KEY}, card_toast: 已收到}}
  feishu_plain:
    connector: feishu_events
    options: {{verification_token: {FEISHU_PLAIN_TOKEN}}}
  alipay:
    connector: alipay
    options:
      app_id: "{ALIPAY_APP_ID}"
      alipay_public_key: |
{indented}
  alipay_gw:
    connector: alipay
    mapping: alipay_gateway
    options:
      app_id: "{ALIPAY_APP_ID}"
      alipay_public_key: |
{indented}
  hook:
    connector: webhook
    mapping: survey_webhook
    options: {{secret: "{WEBHOOK_SECRET}", tolerance_seconds: {window}}}
"""


@dataclass
class Hub:
    """A running receiver and ways to look into its store."""

    rt: Runtime
    client: TestClient
    clock: FakeClock

    def count(self, table: Any = touchpoints, **where: Any) -> int:
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        with self.rt.store.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def events(self, source: str) -> list[dict[str, Any]]:
        with self.rt.store.connect() as conn:
            rows = conn.execute(select(touchpoints.c.doc).where(touchpoints.c.source == source)).all()
        return [r[0] for r in rows]

    def quarantined(self, source: str) -> list[dict[str, Any]]:
        with self.rt.store.connect() as conn:
            rows = conn.execute(select(quarantine).where(quarantine.c.source == source)).mappings().all()
        return [dict(r) for r in rows]

    def stored_anything(self) -> int:
        return self.count(inbox) + self.count(quarantine) + self.count(touchpoints)


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@contextmanager
def make_hub(url: str, keys: RsaPair, clock: FakeClock, window: float = 300) -> Iterator[Hub]:
    """A receiver on ``url`` (already empty), stopped afterwards."""
    rt = build_runtime(hub_config(url, keys.public_pem, window), clock=clock)
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            yield Hub(rt, client, clock)
    finally:
        rt.close()
