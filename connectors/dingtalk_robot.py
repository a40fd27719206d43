"""DingTalk custom group robot (自定义机器人): signed webhook, markdown / actionCard, @mobiles.

``POST {base_url}/robot/send?access_token=..&timestamp=<ms>&sign=..`` where ``sign`` is
``base64(HmacSHA256(key=secret, msg=timestamp + "\\n" + secret))`` (the "加签" security setting).
Limit: 20 messages a minute per robot; exceeding it answers ``130101`` and blocks the robot for ten
minutes, so the outbox keeps a shared 20/min budget and digests a backlog instead.

Rendering: buttons -> ``actionCard`` (one button: ``singleTitle``/``singleURL``; several: ``btns``);
otherwise ``markdown``. A custom robot's cards cannot call back (no app behind it), so a button's
callback ``value`` is not used: its link opens a page that asks who acts. One-tap buttons need the
corp app's interactive cards (:mod:`connectors.dingtalk_work` with ``card_template_id``). Mentions that look
like mobile numbers go to ``at.atMobiles`` (and ``@138...`` in the text, which DingTalk requires),
others to ``at.atUserIds``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from hub.sdk.connector import OutboundMessage, RateLimit, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json
from hub.sdk.policy import ErrorTable
from hub.sdk.render import markdown_with_links, trim_utf8

ERRORS = ErrorTable(
    throttle=frozenset({130101}),
    retry=frozenset({-1}),
    permanent=frozenset({300001, 310000, 400013, 400101, 410100, 430101, 40035}),
    reasons={
        130101: "sending too fast (over 20 a minute); DingTalk blocks the robot for 10 minutes",
        310000: "signature, keyword or IP check failed (check the robot's security settings)",
        300001: "invalid access_token",
        400013: "the group is gone or the robot was removed",
    },
    throttle_seconds=600.0,
)


def sign(secret: str, timestamp_ms: int) -> str:
    """The robot signature for ``timestamp_ms`` (before URL encoding)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _is_mobile(value: str) -> bool:
    return value.isdigit() and len(value) >= 7


class DingTalkRobotOptions(DestinationOptions):
    """``access_token``: from the robot's webhook URL; ``secret``: the ``SEC...`` signing secret."""

    access_token: SecretStr
    secret: SecretStr | None = None
    base_url: str = "https://oapi.dingtalk.com"
    at_all: bool = False
    keyword: str | None = Field(default=None, description="the robot's custom keyword, added to titles without it")


class DingTalkRobot(HttpDestination):
    """DingTalk group robot: markdown, ActionCard buttons, @mentions; signed; 20/min budget."""

    kind = "dingtalk_robot"
    title = "DingTalk custom robot (signed webhook; markdown, actionCard buttons, @mobiles)"
    Options = DingTalkRobotOptions
    options: DingTalkRobotOptions
    staff_facing = True
    supports_digest = True
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(20, 60, block_seconds=600),)
    # DingTalk documents no markdown limit; 18 KB keeps well inside what robots accept
    max_body_bytes: ClassVar[int | None] = 18000

    def render(self, message: OutboundMessage) -> dict[str, Any]:
        """The robot's JSON body for ``message``."""
        title = message.title or "cxhub"
        if self.options.keyword and self.options.keyword not in title + message.body:
            title = f"{self.options.keyword} {title}"
        mobiles = [m for m in message.mention if _is_mobile(m)]
        user_ids = [m for m in message.mention if not _is_mobile(m)]
        text = f"### {title}\n\n{message.body}" if message.body else f"### {title}"
        if mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        at = {"atMobiles": mobiles, "atUserIds": user_ids, "isAtAll": self.options.at_all}
        limit = self.max_body_bytes or 18000
        if message.buttons:
            card: dict[str, Any] = {"title": trim_utf8(title, 256), "text": trim_utf8(text, limit)}
            if len(message.buttons) == 1:
                card.update(singleTitle=message.buttons[0].label, singleURL=message.buttons[0].url)
            else:
                card.update(
                    btnOrientation="0" if len(message.buttons) <= 2 else "1",
                    btns=[{"title": b.label, "actionURL": b.url} for b in message.buttons],
                )
            return {"msgtype": "actionCard", "actionCard": card, "at": at}
        full = markdown_with_links(message, heading="### ") if message.url else text
        if message.url and mobiles:
            full += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": trim_utf8(title, 256), "text": trim_utf8(full, limit)},
            "at": at,
        }

    def send(self, message: OutboundMessage) -> Receipt:
        """Post ``message`` to the robot."""
        params = {"access_token": self.options.access_token.get_secret_value()}
        if self.options.secret is not None:
            ts = int(self.context.clock().timestamp() * 1000)
            params.update(timestamp=str(ts), sign=sign(self.options.secret.get_secret_value(), ts))
        data, _ = call_json(
            self.client,
            "POST",
            self.options.base_url.rstrip("/") + "/robot/send",
            target=self.name,
            params=params,
            json=self.render(message),
            headers=self.headers(message),
        )
        code = int(data.get("errcode", -1))
        ERRORS.check(code, str(data.get("errmsg", "")), target=self.name)
        return Receipt(detail=f"errcode {code} {data.get('errmsg', '')}".strip())
