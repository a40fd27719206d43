"""Destination fixtures: the fake platform, destination factories, RSA keys for Alipay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hub.registry import get
from hub.sdk.connector import ConnectorContext, Destination, KeyValueStore, MemoryKeyValueStore
from hub.sdk.testing import FakeClock
from kit.fakes import (
    ALIYUN_SECRET,
    APP_SECRET,
    DINGTALK_SECRET,
    DINGTALK_TOKEN,
    FEISHU_HOOK,
    FEISHU_SECRET,
    WECOM_KEY,
    FakePlatform,
)


@pytest.fixture(scope="session")
def rsa_keys() -> tuple[str, str]:
    """(app private key PKCS#8 PEM, public key PEM) for the Alipay gateway."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def options_for(kind: str, base_url: str, rsa_private: str = "") -> dict[str, Any]:
    """Options that the fake platform accepts, for destination ``kind``."""
    return {
        "dingtalk_robot": {"access_token": DINGTALK_TOKEN, "secret": DINGTALK_SECRET, "base_url": base_url},
        "dingtalk_work": {"app_key": "ding-app", "app_secret": APP_SECRET, "agent_id": 7, "base_url": base_url},
        "wecom_robot": {"key": WECOM_KEY, "base_url": base_url},
        "wecom_app": {"corp_id": "ww-corp", "secret": APP_SECRET, "agent_id": 1000002, "base_url": base_url},
        "feishu_bot": {"hook": FEISHU_HOOK, "secret": FEISHU_SECRET, "base_url": base_url},
        "feishu_app": {"app_id": "cli_test", "app_secret": APP_SECRET, "base_url": base_url},
        "wechat_message": {"app_id": "wx-test", "app_secret": APP_SECRET, "template_id": "TPL1", "base_url": base_url},
        "alipay_message": {
            "app_id": "2021000000000001",
            "private_key": rsa_private,
            "gateway": base_url + "/gateway.do",
            "template_id": "TPL-ALI",
        },
        "sms": {
            "access_key_id": "LTAI-test",
            "access_key_secret": ALIYUN_SECRET,
            "sign_name": "cxhub",
            "template_code": "SMS_1",
            "base_url": base_url,
        },
    }[kind]


DestinationFactory = Callable[..., Destination]


@pytest.fixture
def fake(clock: FakeClock) -> FakePlatform:
    return FakePlatform(clock=clock)


@pytest.fixture
def make_destination(clock: FakeClock, rsa_keys: tuple[str, str]) -> DestinationFactory:
    """``make_destination(kind, base_url=..., transport=..., kv=..., **option_overrides)``."""

    def make(
        kind: str,
        *,
        base_url: str = "http://fake",
        transport: httpx.BaseTransport | None = None,
        kv: KeyValueStore | None = None,
        name: str | None = None,
        timeout: float = 10.0,
        **overrides: Any,
    ) -> Destination:
        cls = get(kind)
        opts = cls.Options.model_validate({**options_for(kind, base_url, rsa_keys[0]), **overrides})
        ctx = ConnectorContext(clock=clock, transport=transport, kv=kv or MemoryKeyValueStore(clock), timeout=timeout)
        dst = cls(name or kind, opts, ctx)
        assert isinstance(dst, Destination)
        return dst

    return make
