"""Feishu / Lark app message: ``POST {base_url}/open-apis/im/v1/messages?receive_id_type=..``.

Token: ``tenant_access_token/internal`` (2 h; the platform returns the same token until the last
30 minutes, so processes sharing it through the store is safe), kept by :class:`TokenCache`.
Each recipient gets one call with ``uuid`` derived from the message key and the recipient: Feishu
drops a repeat with the same uuid within an hour, so a retry after a crash never shows twice.

Why not lark-oapi's client here: its synchronous transport calls the module-level
``requests.request`` (no injectable transport, so neither respx nor the hub's transport reach it)
and caches tokens per process. The card JSON is the same one :mod:`connectors.feishu_bot` builds,
with callback buttons: a button with a ``value`` (a case's acknowledge) sends ``card.action.trigger``
to the app's request URL (a ``feishu_events`` source), signed, naming who pressed it; one tap.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import SecretStr

from connectors.feishu_bot import card
from hub.errors import PermanentError
from hub.sdk.connector import OutboundMessage, RateLimit, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json
from hub.sdk.policy import ErrorTable, parse_retry_after
from hub.sdk.tokens import TokenCache, token_answer

ERRORS = ErrorTable(
    token=frozenset({99991663, 99991668, 99991661}),
    throttle=frozenset({99991400, 230020}),
    retry=frozenset({-1, 1000004, 1000005}),
    permanent=frozenset({230001, 230002, 230006, 230013, 230017, 230099, 99991672, 99992402, 99991401}),
    reasons={
        230002: "the bot is not in the chat",
        230013: "the bot has no availability to this user",
        99991672: "the app lacks the im:message scope",
        99992402: "invalid receive_id",
        99991400: "request frequency limit",
    },
)
#: the token call: bad app id / secret are permanent
TOKEN_ERRORS = ErrorTable(permanent=frozenset({10003, 10014, 99991663}))


class FeishuAppOptions(DestinationOptions):
    """A self-built app: ``app_id`` / ``app_secret``; recipients are ``receive_id_type`` ids."""

    app_id: str
    app_secret: SecretStr
    base_url: str = "https://open.feishu.cn"
    receive_id_type: Literal["open_id", "user_id", "union_id", "email", "chat_id"] = "open_id"


class FeishuAppMessage(HttpDestination):
    """Feishu app message (interactive card) to users or chats; idempotent through ``uuid``."""

    kind = "feishu_app"
    title = "Feishu app message (tenant token in the store; card with buttons; uuid dedup)"
    Options = FeishuAppOptions
    options: FeishuAppOptions
    staff_facing = True
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(50, 1),)
    max_body_bytes: ClassVar[int | None] = 16000

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokens = TokenCache(
            self.context.kv, f"feishu:{self.options.app_id}", self._fetch_token, clock=self.context.clock
        )

    def _url(self, path: str) -> str:
        return self.options.base_url.rstrip("/") + path

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        data, _ = call_json(
            self.client,
            "POST",
            self._url("/open-apis/auth/v3/tenant_access_token/internal"),
            target=self.name,
            json={"app_id": self.options.app_id, "app_secret": self.options.app_secret.get_secret_value()},
            allow_error_status=True,
        )
        return token_answer(
            data,
            TOKEN_ERRORS,
            target=self.name,
            code_field="code",
            message_field="msg",
            token_field="tenant_access_token",  # noqa: S106 - the answer's field name, not a secret
            expires_field="expire",
            missing_code=-1,
            what="a tenant access token",
        )

    @staticmethod
    def uuid_for(key: str, recipient: str) -> str:
        """Feishu's dedup ``uuid`` (at most 50 characters) for ``key`` sent to ``recipient``."""
        return hashlib.sha256(f"{key}\n{recipient}".encode()).hexdigest()[:50]

    def _post(self, token: str, recipient: str, message: OutboundMessage) -> dict[str, Any]:
        data, resp = call_json(
            self.client,
            "POST",
            self._url("/open-apis/im/v1/messages"),
            target=self.name,
            params={"receive_id_type": self.options.receive_id_type},
            headers={**self.headers(message), "Authorization": f"Bearer {token}"},
            json={
                "receive_id": recipient,
                "msg_type": "interactive",
                "content": json.dumps(card(message, self.max_body_bytes or 16000, callbacks=True), ensure_ascii=False),
                "uuid": self.uuid_for(message.key, recipient),
            },
            allow_error_status=True,
        )
        retry_after = parse_retry_after(resp.headers.get("x-ogw-ratelimit-reset"))
        ERRORS.check(int(data.get("code", -1)), str(data.get("msg", "")), target=self.name, retry_after=retry_after)
        return data

    def send(self, message: OutboundMessage) -> Receipt:
        """One card to each recipient in ``message.to``."""
        if not message.to:
            raise PermanentError(f"no recipient: `to` needs {self.options.receive_id_type} values", target=self.name)
        ids = []
        for recipient in message.to:
            data = self.tokens.call(functools.partial(self._post, recipient=recipient, message=message))
            ids.append(str((data.get("data") or {}).get("message_id") or ""))
        return Receipt(message_id=",".join(i for i in ids if i) or None, detail="code 0")
