"""WeChat official-account template / subscribe messages and mini-program subscribe messages.

Calls go through wechatpy (``message.send_template``, ``wxa.send_subscribe_message``, and its
generic ``post`` for the OA ``subscribe/bizsend`` it lacks) on the hub's httpx transport. The
access token comes from ``POST /cgi-bin/stable_token`` (not the classic ``cgi-bin/token``, whose
every call invalidates the previous token), cached in the store and refreshed by one process at a
time (:class:`TokenCache` under ``Store.lock``). When WeChat refuses a token (40001/40014/42001)
it is refreshed once with ``force_refresh`` (limited by WeChat to 20 a day, so only the process
holding the lock, and only when the cached token is the refused one) and the call retried once.

``api``: ``oa_template`` (公众号模板消息), ``oa_subscribe`` (公众号订阅通知),
``mp_subscribe`` (小程序订阅消息). Message fields: ``to`` = [openid], ``template`` (or the
``template_id`` option), ``data`` = template fields (``"keyword1": "value"`` or
``{"value": .., "color": ..}``), ``url`` = link (OA) or page path (mini-program: a path such as
``pages/survey/index?token=..``; a web link is never sent as ``page``, the ``miniprogram_page``
option is used instead). Policy refusals
are permanent: not following (43004), not subscribed / grant used (43101), outside the 48-hour
window (45015), bad openid (40003) or template (40037).
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import SecretStr

from hub.errors import PermanentError
from hub.sdk.connector import OutboundMessage, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json, route_sdk_through, sdk_errors
from hub.sdk.policy import ErrorTable
from hub.sdk.tokens import TokenCache, token_answer

ERRORS = ErrorTable(
    token=frozenset({40001, 40014, 42001}),
    throttle=frozenset({45009}),
    retry=frozenset({-1}),
    permanent=frozenset({40003, 40037, 41028, 41029, 41030, 43004, 43101, 45015, 45047, 47003, 48001, 40013}),
    reasons={
        40003: "invalid openid",
        40037: "invalid template_id",
        43004: "the user does not follow the account",
        43101: "the user has not subscribed (or the one-time grant was used)",
        45015: "outside the 48-hour window",
        45047: "over 20 messages without a reply from the user",
        47003: "template data does not match the template",
        48001: "API not authorised for this account",
        45009: "API quota or frequency limit",
    },
)
#: the token call: bad appid / secret or server IP not allowed are permanent
TOKEN_ERRORS = ErrorTable(permanent=frozenset({40013, 40125, 40164, 41002, 41004}))
WECHAT_ORIGIN = "https://api.weixin.qq.com"


class WeChatMessagesOptions(DestinationOptions):
    """An official account or mini-program: ``app_id`` / ``app_secret`` and which API."""

    app_id: str
    app_secret: SecretStr
    api: Literal["oa_template", "oa_subscribe", "mp_subscribe"] = "oa_template"
    template_id: str | None = None
    base_url: str = WECHAT_ORIGIN
    miniprogram_app_id: str | None = None
    miniprogram_page: str | None = None


def template_data(data: dict[str, Any]) -> dict[str, Any]:
    """Template fields in WeChat's ``{"key": {"value": ..}}`` shape; ``_``-prefixed keys are extras."""
    return {
        k: (v if isinstance(v, dict) else {"value": "" if v is None else str(v)})
        for k, v in data.items()
        if not k.startswith("_")
    }


def _is_web_link(url: str) -> bool:
    return "://" in url


class WeChatMessages(HttpDestination):
    """WeChat OA template / subscribe and mini-program subscribe messages (wechatpy, stable_token)."""

    kind = "wechat_message"
    title = "WeChat OA template / subscribe and mini-program subscribe messages (wechatpy, stable_token)"
    Options = WeChatMessagesOptions
    options: WeChatMessagesOptions
    requires = ("wechatpy",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokens = TokenCache(
            self.context.kv, f"wechat:{self.options.app_id}", self._fetch_token, clock=self.context.clock
        )
        self._local = threading.local()  # wechatpy clients hold per-call state: one per sending thread

    @property
    def sdk(self) -> Any:
        """wechatpy's client on our transport (token injected per call)."""
        if getattr(self._local, "sdk", None) is None:
            from wechatpy import WeChatClient

            sdk = WeChatClient(self.options.app_id, "unused", access_token="-", timeout=self.options.timeout)  # noqa: S106 - placeholder
            sdk.auto_retry = False
            route_sdk_through(sdk, self.client, {WECHAT_ORIGIN: self.options.base_url})
            self._local.sdk = sdk
        return self._local.sdk

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        data, _ = call_json(
            self.client,
            "POST",
            self.options.base_url.rstrip("/") + "/cgi-bin/stable_token",
            target=self.name,
            json={
                "grant_type": "client_credential",
                "appid": self.options.app_id,
                "secret": self.options.app_secret.get_secret_value(),
                "force_refresh": force,
            },
        )
        return token_answer(data, TOKEN_ERRORS, target=self.name)

    def _call(self, token: str, openid: str, message: OutboundMessage) -> dict[str, Any]:
        template = message.template or self.options.template_id
        if not template:
            raise PermanentError("no template: set message.template or the template_id option", target=self.name)
        sdk = self.sdk
        sdk.session.set(sdk.access_token_key, token)
        sdk._http.headers.update(self.headers(message))
        data = template_data(message.data)
        mini = None
        if self.options.miniprogram_app_id:
            mini = {"appid": self.options.miniprogram_app_id, "pagepath": self.options.miniprogram_page or ""}
        with sdk_errors(ERRORS, target=self.name):
            if self.options.api == "oa_template":
                result = sdk.message.send_template(openid, template, data, url=message.url, mini_program=mini)
            elif self.options.api == "oa_subscribe":
                body: dict[str, Any] = {"touser": openid, "template_id": template, "data": data}
                if message.url:
                    body["page"] = message.url
                if mini:
                    body["miniprogram"] = mini
                result = sdk.post("message/subscribe/bizsend", data=body)
            else:
                page = message.url if message.url and not _is_web_link(message.url) else self.options.miniprogram_page
                result = sdk.wxa.send_subscribe_message(openid, template, data, page=page)
        return result if isinstance(result, dict) else {}

    def send(self, message: OutboundMessage) -> Receipt:
        """Send to the one openid in ``message.to``."""
        if len(message.to) != 1:
            # one call per openid; several in one message could not be retried without repeating
            raise PermanentError(f"exactly one openid in `to` (got {len(message.to)})", target=self.name)
        openid = message.to[0]
        result = self.tokens.call(lambda token: self._call(token, openid, message))
        msgid = result.get("msgid")
        return Receipt(message_id=str(msgid) if msgid is not None else None, detail="errcode 0")
