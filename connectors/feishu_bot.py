"""Feishu / Lark custom bot (自定义机器人): ``POST {base_url}/open-apis/bot/v2/hook/{hook}``.

Signed with ``sign = base64(HmacSHA256(key = timestamp + "\\n" + secret, msg = ""))``: the key and
message are the reverse of DingTalk's. Messages with a title or buttons go as an interactive card
(header, Markdown, one button per ``Button``); ``format: post`` sends rich text instead; a message
with only a body goes as text. A custom bot's card buttons are links: Feishu sends card callbacks
only to an app's request URL (:mod:`connectors.feishu_app` sends callback buttons). Limits: 5 a second and 100 a minute per bot, request body at most
20 KB; ``11232`` when throttled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar, Literal

from pydantic import SecretStr

from hub.sdk.connector import Button, OutboundMessage, RateLimit, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json
from hub.sdk.policy import ErrorTable
from hub.sdk.render import buttons_as_links, flatten_markdown, trim_utf8

ERRORS = ErrorTable(
    throttle=frozenset({11232}),
    retry=frozenset({-1, 11233}),
    permanent=frozenset({19021, 19022, 19024, 9499, 19001, 19002}),
    reasons={
        11232: "bot frequency limit (5/s, 100/min)",
        19021: "signature check failed (secret or clock)",
        19022: "IP not allowed",
        19024: "keyword check failed",
        9499: "bad request",
    },
)


def sign(secret: str, timestamp: int) -> str:
    """The bot signature for ``timestamp`` (seconds)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def card(message: OutboundMessage, body_limit: int, *, callbacks: bool = False) -> dict[str, Any]:
    """An interactive card (message card JSON) for ``message``: header, Markdown, buttons.

    With ``callbacks`` (an app's card, whose callbacks reach the app's request URL), a button with
    a ``value`` is a callback button: ``{"tag": "button", "value": {...}}`` with no ``url``, so a
    tap sends ``card.action.trigger`` with that value and the presser, and opens nothing. A custom
    bot has no request URL (Feishu delivers no callback for its cards): its buttons are links."""
    text = message.body
    if message.mention:
        text += "\n" + " ".join("<at id=all></at>" if m == "all" else f"<at id={m}></at>" for m in message.mention)
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": trim_utf8(text, body_limit)}]
    buttons = list(message.buttons)
    if message.url and all(b.url != message.url for b in buttons):
        buttons.append(Button("查看详情", message.url))
    if buttons:
        actions = []
        for i, b in enumerate(buttons):
            button: dict[str, Any] = {
                "tag": "button",
                "text": {"tag": "plain_text", "content": b.label},
                "type": "primary" if i == 0 else "default",
            }
            if callbacks and b.value is not None:
                button["value"] = b.value
            else:
                button["url"] = b.url
            actions.append(button)
        elements.append({"tag": "action", "actions": actions})
    return {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": trim_utf8(message.title or "cxhub", 200)}},
        "elements": elements,
    }


class FeishuBotOptions(DestinationOptions):
    """``hook``: the id at the end of the webhook URL; ``secret``: the signature secret."""

    hook: SecretStr
    secret: SecretStr | None = None
    base_url: str = "https://open.feishu.cn"
    format: Literal["card", "post"] = "card"


class FeishuBot(HttpDestination):
    """Feishu custom bot: signed; interactive cards with buttons, post, text; 5/s and 100/min."""

    kind = "feishu_bot"
    title = "Feishu custom bot (signed; interactive card with buttons, post, text)"
    Options = FeishuBotOptions
    options: FeishuBotOptions
    staff_facing = True
    supports_digest = True
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(5, 1), RateLimit(100, 60))
    # the whole request may be 20 KB; leave room for the card's JSON around the text
    max_body_bytes: ClassVar[int | None] = 16000

    def render(self, message: OutboundMessage) -> dict[str, Any]:
        """The bot's JSON body (without timestamp / sign)."""
        limit = self.max_body_bytes or 16000
        if self.options.format == "post":
            lines: list[list[dict[str, Any]]] = [
                [{"tag": "text", "text": line}]
                for line in trim_utf8(flatten_markdown(message.body), limit).splitlines()
            ]
            links = [{"tag": "a", "text": b.label, "href": b.url} for b in message.buttons]
            if message.url:
                links.append({"tag": "a", "text": "查看详情", "href": message.url})
            if links:
                lines.append(links)
            if message.mention:
                lines.append([{"tag": "at", "user_id": m} for m in message.mention])
            return {"msg_type": "post", "content": {"post": {"zh_cn": {"title": message.title, "content": lines}}}}
        if message.title or message.buttons or message.url:
            return {"msg_type": "interactive", "card": card(message, limit)}
        text = flatten_markdown(message.body)
        extra = buttons_as_links(message)
        return {"msg_type": "text", "content": {"text": trim_utf8(text + ("\n" + extra if extra else ""), limit)}}

    def send(self, message: OutboundMessage) -> Receipt:
        """Post ``message`` to the bot."""
        body = self.render(message)
        if self.options.secret is not None:
            ts = int(self.context.clock().timestamp())
            body.update(timestamp=str(ts), sign=sign(self.options.secret.get_secret_value(), ts))
        url = f"{self.options.base_url.rstrip('/')}/open-apis/bot/v2/hook/{self.options.hook.get_secret_value()}"
        data, _ = call_json(
            self.client,
            "POST",
            url,
            target=self.name,
            json=body,
            headers=self.headers(message),
            allow_error_status=True,
        )
        # current answers are {"code":0,"msg":"success"}; older ones {"StatusCode":0,"StatusMessage":..}
        code = int(data.get("code", data.get("StatusCode", -1)))
        ERRORS.check(code, str(data.get("msg", data.get("StatusMessage", ""))), target=self.name)
        return Receipt(detail=f"code {code} {data.get('msg', data.get('StatusMessage', ''))}".strip())
