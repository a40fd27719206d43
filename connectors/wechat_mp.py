"""WeChat mini-program (小程序) message push: JSON or XML (chosen in the console), plain or
encrypted; customer-service messages (text, image, mini-program card, session enter) and
subscribe-message events (popup accept / reject, settings change, send result).

Same scheme as the official account (``connectors.wechat_oa``): the envelope of an encrypted JSON
push is ``{"ToUserName": .., "Encrypt": ..}`` and its plaintext is JSON again.
"""

from __future__ import annotations

from typing import Any

from connectors.wechat_oa import WeChatOAOptions, WeChatOfficialAccountSource
from hub.sdk.callbacks import parse_json
from hub.sdk.connector import InboundRequest


class WeChatMiniProgramOptions(WeChatOAOptions):
    """As the official account: ``token``, ``encoding_aes_key``, ``app_id`` (the mini-program's)."""


class WeChatMiniProgramSource(WeChatOfficialAccountSource):
    """WeChat mini-program customer-service messages and subscribe-message events (JSON or XML)."""

    kind = "wechat_mp"
    title = "WeChat mini-program push (JSON or XML, plain / AES, wechatpy)"
    Options = WeChatMiniProgramOptions
    options: WeChatMiniProgramOptions
    default_mapping = "wechat_mp"
    content_types = ("application/json", "text/xml", "application/xml", "text/plain")

    def parse(self, text: str, request: InboundRequest) -> dict[str, Any]:
        """JSON when the body looks like JSON, XML otherwise (the console decides the format)."""
        if not text.lstrip().startswith("{"):
            return super().parse(text, request)
        data: dict[str, Any] = parse_json(text, source=self.name)
        return data
