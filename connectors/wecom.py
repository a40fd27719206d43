"""WeCom (企业微信) app callback: encrypted XML messages and events.

- ``GET ?msg_signature&timestamp&nonce&echostr``: the signature covers the *encrypted* echostr;
  the decrypted plaintext is returned as is (within 1 s).
- ``POST``: always encrypted (``msg_signature`` over ``Encrypt``), sealed for the corp id (or the
  suite id of a third-party app). The reply is an empty 200 body.
- Events that matter for customer experience: external-contact changes (add / delete a customer,
  ``change_external_contact``), customer messages to the app, menu clicks.

Crypto is wechatpy's enterprise ``PrpCrypto`` scheme (identical to WeChat's, corp id as receive id).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, field_validator

from connectors.wechat_oa import WeChatOfficialAccountSource
from hub.errors import SignatureError
from hub.sdk.callbacks import MsgCryptOptions, check_encoding_aes_key, parse_epoch, query_value
from hub.sdk.connector import InboundRequest, Reply


class WeComOptions(MsgCryptOptions):
    """``token`` / ``encoding_aes_key`` of the app's 接收消息 settings; ``corp_id`` (or suite id)."""

    encoding_aes_key: SecretStr  # required here: WeCom always encrypts
    corp_id: str

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_required(cls, v: SecretStr) -> SecretStr:
        checked = check_encoding_aes_key(v)
        assert checked is not None
        return checked


class WeComCallbackSource(WeChatOfficialAccountSource):
    """WeCom app callbacks: URL verification with the encrypted echostr, encrypted messages and
    events (external-contact changes, customer messages, menu clicks)."""

    kind = "wecom"
    title = "WeCom app callback (encrypted XML messages and events, wechatpy enterprise crypto)"
    Options = WeComOptions  # type: ignore[assignment]
    options: WeComOptions  # type: ignore[assignment]
    default_mapping = "wecom"
    receive_id_option = "corp_id"

    def receive_id(self) -> str:
        return self.options.corp_id

    def verify_url(self, request: InboundRequest) -> Reply:
        ts = query_value(request, "timestamp") or ""
        nonce = query_value(request, "nonce") or ""
        echostr = query_value(request, "echostr")
        if echostr is None:
            raise SignatureError("echostr is missing", source=self.name)
        signature = query_value(request, "msg_signature")
        self.crypt.check(signature, ts, nonce, echostr)
        self.guard(request, parse_epoch(ts, field="timestamp", source=self.name), nonce, signature)
        return Reply.text(self.crypt.decrypt(echostr))

    def encrypted(self, request: InboundRequest) -> bool:
        return True

    def ack(self) -> Reply:
        """WeCom wants an empty 200."""
        return Reply(body=b"")

    def reply(self, msg: dict[str, Any], request: InboundRequest) -> Reply:
        return self.ack()
