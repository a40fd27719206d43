"""DingTalk work notification (工作通知) through a corp app: access token, markdown / action_card.

Token: ``GET {base_url}/gettoken?appkey&appsecret`` (7200 s; repeated calls return the same token,
so it is safe across processes) kept in the store by :class:`~hub.sdk.tokens.TokenCache`.
Send: ``POST {base_url}/topapi/message/corpconversation/asyncsend_v2?access_token=`` with
``agent_id``, ``userid_list`` (the message's ``to``) and ``msg``. DingTalk itself delivers the same
content to the same user only once a day, which also absorbs a retried send.

Interactive cards (互动卡片), for one-tap buttons: with ``card_template_id`` set, a message with
callback buttons (a case's acknowledge) goes through the app's robot as an interactive card,
``POST {api_url}/v1.0/card/instances/createAndDeliver`` (header ``x-acs-dingtalk-access-token``):
one card per recipient, ``openSpaceId`` ``dtv1.card//IM_ROBOT.<userId>`` (a ``cid...`` recipient is a
group: ``dtv1.card//IM_GROUP.<openConversationId>``), ``callbackType: HTTP`` with the
``callbackRouteKey`` registered for cxhub's ``dingtalk_events`` URL. ``cardData.cardParamMap``
(strings only) has ``title``, ``markdown``, ``view_url`` and, per callback button, ``<op>_key`` (the
signed one-string value, ``cxhub:12:ack:<token>``) and ``<op>_label``. The card template (built once
in DingTalk's card platform) shows ``markdown`` and binds each button's 回传请求 params to
``{"cxhub": "${ack_key}"}``; the tap comes back as a callback whose ``cardPrivateData.params`` hold
that key and whose ``userId`` is who pressed it. ``outTrackId`` is derived from the message key and
the recipient, so a retried send updates the same card instead of posting a second one.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from hub.errors import PermanentError, TokenExpired
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
    api_url: str = Field(default="https://api.dingtalk.com", description="the v1.0 OpenAPI (interactive cards)")
    card_template_id: str | None = Field(
        default=None, description="an interactive card template (see the module doc); none: action cards with links"
    )
    robot_code: str | None = Field(default=None, description="the app robot that posts cards (default: app_key)")
    callback_route_key: str | None = Field(
        default=None, description="the callbackRouteKey registered for cxhub's dingtalk_events URL"
    )


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

    def interactive_card(self, message: OutboundMessage, recipient: str) -> dict[str, Any]:
        """The ``createAndDeliver`` body of ``message``'s interactive card for ``recipient``."""
        assert self.options.card_template_id is not None
        robot = self.options.robot_code or self.options.app_key
        title = trim_utf8(message.title or "cxhub", 128)
        params: dict[str, str] = {
            "title": title,
            "markdown": trim_utf8(message.body, self.max_body_bytes or 5000),
            "view_url": message.url or "",
        }
        for b in message.buttons:
            if b.value is None:
                continue
            op = str(b.value.get("op") or f"button{len(params)}")
            params[f"{op}_label"] = b.label
            params[f"{op}_key"] = str(b.value.get("key") or "")
        out_track = hashlib.sha256(f"{message.key}\n{recipient}".encode()).hexdigest()[:32]
        body: dict[str, Any] = {
            "cardTemplateId": self.options.card_template_id,
            "outTrackId": f"cxhub-{out_track}",
            "callbackType": "HTTP",
            "cardData": {"cardParamMap": params},
            "userIdType": 1,
        }
        if self.options.callback_route_key:
            body["callbackRouteKey"] = self.options.callback_route_key
        if recipient.startswith("cid"):
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{recipient}"
            body["imGroupOpenSpaceModel"] = {"supportForward": False, "lastMessageI18n": {"ZH_CN": title}}
            body["imGroupOpenDeliverModel"] = {"robotCode": robot}
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{recipient}"
            body["imRobotOpenSpaceModel"] = {"supportForward": False, "lastMessageI18n": {"ZH_CN": title}}
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": robot}
        return body

    def _deliver_card(self, token: str, *, message: OutboundMessage, recipient: str) -> dict[str, Any]:
        data, _ = call_json(
            self.client,
            "POST",
            self.options.api_url.rstrip("/") + "/v1.0/card/instances/createAndDeliver",
            target=self.name,
            headers={**self.headers(message), "x-acs-dingtalk-access-token": token},
            json=self.interactive_card(message, recipient),
            allow_error_status=True,
        )
        if not data.get("success", "result" in data):
            # the v1.0 API answers errors as {"code": "...", "message": "..."} with an HTTP error status
            code = str(data.get("code") or "unknown")
            detail = str(data.get("message") or "")
            if code in ("InvalidAuthentication", "Forbidden.AccessDenied.AccessTokenInvalid"):
                raise TokenExpired(f"access token refused: {code}", target=self.name, code=code)
            raise PermanentError(f"interactive card refused: {code} {detail}".strip(), target=self.name, code=code)
        return data

    def send(self, message: OutboundMessage) -> Receipt:
        """Send a work notification to ``message.to`` (DingTalk user ids), or, with a card template
        and callback buttons, an interactive card to each of them."""
        if not message.to:
            raise PermanentError("no recipient: work notifications need user ids in `to`", target=self.name)
        if self.options.card_template_id and any(b.value is not None for b in message.buttons):
            for recipient in message.to:
                self.tokens.call(functools.partial(self._deliver_card, message=message, recipient=recipient))
            return Receipt(detail=f"interactive card to {len(message.to)} recipient(s)")
        data = self.tokens.call(lambda token: self._post(token, message))
        return Receipt(message_id=str(data.get("task_id") or "") or None, detail="errcode 0")
