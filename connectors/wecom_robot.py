"""WeCom group robot (群机器人): ``POST {base_url}/cgi-bin/webhook/send?key=KEY``.

Markdown is at most 4096 bytes (``40058`` beyond): bodies are trimmed on a UTF-8 character
boundary here, and digests are packed to fit. Text (used when mentioning by mobile number, which
only the text type supports) is at most 2048 bytes. Buttons become Markdown links, or a
``template_card`` (text_notice with a jump list) with ``buttons_as: template_card``: links either
way, a group robot's cards do not call back (:mod:`connectors.wecom_app` sends callback buttons).
Limit: 20 messages a minute per robot; ``45009`` when throttled.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import SecretStr

from hub.sdk.connector import OutboundMessage, RateLimit, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json
from hub.sdk.policy import ErrorTable
from hub.sdk.render import flatten_markdown, markdown_with_links, trim_utf8

MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048

ERRORS = ErrorTable(
    throttle=frozenset({45009}),
    retry=frozenset({-1}),
    permanent=frozenset({93000, 40058, 40008, 44004, 93004, 40001, 40014}),
    reasons={
        45009: "over 20 messages a minute",
        93000: "invalid webhook key (robot deleted?)",
        40058: "content over the platform's length limit",
        44004: "empty content",
    },
)


def _is_mobile(value: str) -> bool:
    return value.isdigit() and len(value) >= 7


class WeComRobotOptions(DestinationOptions):
    """``key``: the ``key=`` of the robot's webhook URL."""

    key: SecretStr
    base_url: str = "https://qyapi.weixin.qq.com"
    buttons_as: Literal["markdown", "template_card"] = "markdown"


class WeComRobot(HttpDestination):
    """WeCom group robot: markdown (<= 4096 bytes, trimmed safely), template cards, mentions."""

    kind = "wecom_robot"
    title = "WeCom group robot (markdown <= 4096 bytes, template_card, @mentions)"
    Options = WeComRobotOptions
    options: WeComRobotOptions
    staff_facing = True
    supports_digest = True
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(20, 60),)
    max_body_bytes: ClassVar[int | None] = MARKDOWN_MAX_BYTES

    def render(self, message: OutboundMessage) -> dict[str, Any]:
        """The robot's JSON body for ``message``."""
        mobiles = [m for m in message.mention if _is_mobile(m)]
        users = [m for m in message.mention if not _is_mobile(m)]
        if mobiles:  # only the text type can mention by mobile number
            text = flatten_markdown(markdown_with_links(message, heading=""))
            return {
                "msgtype": "text",
                "text": {
                    "content": trim_utf8(text, TEXT_MAX_BYTES),
                    "mentioned_list": users,
                    "mentioned_mobile_list": mobiles,
                },
            }
        links = [b for b in message.buttons] or []
        if self.options.buttons_as == "template_card" and (links or message.url):
            return self._card(message)
        content = markdown_with_links(message, heading="### ")
        mention = "".join(f"<@{u}>" for u in users)
        room = MARKDOWN_MAX_BYTES - len(mention.encode("utf-8")) - (1 if mention else 0)
        content = trim_utf8(content, room) + (("\n" + mention) if mention else "")
        return {"msgtype": "markdown", "markdown": {"content": content}}

    def _card(self, message: OutboundMessage) -> dict[str, Any]:
        jump = [{"type": 1, "url": b.url, "title": trim_utf8(b.label, 39)} for b in message.buttons[:3]]
        target = message.url or message.buttons[0].url
        card: dict[str, Any] = {
            "card_type": "text_notice",
            "main_title": {"title": trim_utf8(message.title or "cxhub", 78)},
            "sub_title_text": trim_utf8(flatten_markdown(message.body), 336),
            "card_action": {"type": 1, "url": target},
        }
        if jump:
            card["jump_list"] = jump
        return {"msgtype": "template_card", "template_card": card}

    def send(self, message: OutboundMessage) -> Receipt:
        """Post ``message`` to the robot."""
        data, _ = call_json(
            self.client,
            "POST",
            self.options.base_url.rstrip("/") + "/cgi-bin/webhook/send",
            target=self.name,
            params={"key": self.options.key.get_secret_value()},
            json=self.render(message),
            headers=self.headers(message),
        )
        code = int(data.get("errcode", -1))
        ERRORS.check(code, str(data.get("errmsg", "")), target=self.name)
        return Receipt(detail=f"errcode {code} {data.get('errmsg', '')}".strip())
