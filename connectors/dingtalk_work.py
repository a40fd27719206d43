"""DingTalk work notification (工作通知) through a corp app: access token, markdown / action_card.

Token: ``GET {base_url}/gettoken?appkey&appsecret`` (7200 s; repeated calls return the same token,
so it is safe across processes) kept in the store by :class:`~hub.sdk.tokens.TokenCache`.
Send: ``POST {base_url}/topapi/message/corpconversation/asyncsend_v2?access_token=`` with
``agent_id``, ``userid_list`` (the message's ``to``) and ``msg``. DingTalk itself delivers the same
content to the same user only once a day, which also absorbs a retried send.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import SecretStr

from hub.errors import PermanentError
from hub.sdk.connector import OutboundMessage, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json
from hub.sdk.policy import ErrorTable
from hub.sdk.render import markdown_with_links, trim_utf8
from hub.sdk.tokens import TokenCache, token_answer

ERRORS = ErrorTable(
    token=frozenset({40001, 40014, 42001, 88}),
    throttle=frozenset({143103, 143104, 90018, 90002}),
    retry=frozenset({-1}),
    permanent=frozenset({33012, 40035, 40056, 60020, 60011, 400002}),
    reasons={
        143103: "app QPM exceeded",
        143104: "corp QPM exceeded",
        60020: "server IP not in the app's allow list",
        40056: "invalid agent_id",
        33012: "invalid userid",
    },
)
#: the token call: bad key / secret or server IP are permanent (no retry fixes them)
TOKEN_ERRORS = ErrorTable(permanent=frozenset({40089, 40014, 40001, 60020}))


class DingTalkWorkOptions(DestinationOptions):
    """A corp internal app: ``app_key``, ``app_secret``, ``agent_id``."""

    app_key: str
    app_secret: SecretStr
    agent_id: int
    base_url: str = "https://oapi.dingtalk.com"


class DingTalkWorkNotice(HttpDestination):
    """DingTalk work notification to staff user ids (corp app, access token in the store)."""

    kind = "dingtalk_work"
    title = "DingTalk work notification (corp app; markdown / action_card to user ids)"
    Options = DingTalkWorkOptions
    options: DingTalkWorkOptions
    staff_facing = True
    max_body_bytes: ClassVar[int | None] = 5000

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokens = TokenCache(
            self.context.kv, f"dingtalk:{self.options.app_key}", self._fetch_token, clock=self.context.clock
        )

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        data, _ = call_json(
            self.client,
            "GET",
            self.options.base_url.rstrip("/") + "/gettoken",
            target=self.name,
            params={"appkey": self.options.app_key, "appsecret": self.options.app_secret.get_secret_value()},
        )
        return token_answer(data, TOKEN_ERRORS, target=self.name, missing_code=-1)

    def render(self, message: OutboundMessage) -> dict[str, Any]:
        """The ``msg`` object for ``message``."""
        title = trim_utf8(message.title or "cxhub", 128)
        text = trim_utf8(
            f"### {title}\n\n{message.body}" if message.body else f"### {title}", self.max_body_bytes or 5000
        )
        if message.buttons:
            card: dict[str, Any] = {"title": title, "markdown": text}
            if len(message.buttons) == 1:
                card.update(single_title=message.buttons[0].label, single_url=message.buttons[0].url)
            else:
                card.update(
                    btn_orientation="0" if len(message.buttons) <= 2 else "1",
                    btn_json_list=[{"title": b.label, "action_url": b.url} for b in message.buttons],
                )
            return {"msgtype": "action_card", "action_card": card}
        return {"msgtype": "markdown", "markdown": {"title": title, "text": markdown_with_links(message)}}

    def _post(self, token: str, message: OutboundMessage) -> dict[str, Any]:
        data, _ = call_json(
            self.client,
            "POST",
            self.options.base_url.rstrip("/") + "/topapi/message/corpconversation/asyncsend_v2",
            target=self.name,
            params={"access_token": token},
            json={"agent_id": self.options.agent_id, "userid_list": ",".join(message.to), "msg": self.render(message)},
            headers=self.headers(message),
        )
        ERRORS.check(int(data.get("errcode", -1)), str(data.get("errmsg", "")), target=self.name)
        return data

    def send(self, message: OutboundMessage) -> Receipt:
        """Send a work notification to ``message.to`` (DingTalk user ids)."""
        if not message.to:
            raise PermanentError("no recipient: work notifications need user ids in `to`", target=self.name)
        data = self.tokens.call(lambda token: self._post(token, message))
        return Receipt(message_id=str(data.get("task_id") or "") or None, detail="errcode 0")
