"""WeCom app message (应用消息) through wechatpy's ``enterprise`` client.

wechatpy builds and sends the call and raises ``WeChatClientException`` with the ``errcode``;
it runs on the hub's injected httpx transport (:class:`~hub.sdk.http.HttpxAdapter`) and its
own token handling is bypassed: the token lives in the store (:class:`TokenCache`, one refresher at
a time), because wechatpy 1.x keeps ``expires_at`` in process memory and processes clobber each
other's tokens (wechatpy#684).

Markdown by default; with link buttons or a url, a ``textcard``; with callback buttons (a case's
acknowledge), a ``button_interaction`` template card whose button keys come back, signed and
encrypted, as ``template_card_event`` to the app's callback URL (a ``wecom`` source): one tap. ``enable_duplicate_check`` makes WeCom
itself drop a repeat of the same content to the same members within ``duplicate_check_seconds``,
which covers the one case an outbox cannot: a crash after WeCom accepted a message but before the
hub recorded it. Limit: 30 messages a minute and 1000 an hour per member (WeCom silently drops the
excess), kept as per-recipient budgets.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from hub.errors import PermanentError
from hub.sdk.connector import OutboundMessage, RateLimit, Receipt
from hub.sdk.destination import DestinationOptions, HttpDestination
from hub.sdk.http import call_json, route_sdk_through, sdk_errors
from hub.sdk.policy import ErrorTable
from hub.sdk.render import flatten_markdown, markdown_with_links, trim_utf8
from hub.sdk.tokens import TokenCache, token_answer

ERRORS = ErrorTable(
    token=frozenset({40014, 42001, 41001}),
    throttle=frozenset({45009, 45033}),
    retry=frozenset({-1}),
    permanent=frozenset({40003, 40056, 60020, 81013, 82001, 301002, 40001, 48002}),
    reasons={
        81013: "no valid recipient (user ids not in the app's visible range)",
        60020: "server IP not in the app's trusted IPs",
        40056: "invalid agent_id",
        45009: "API frequency limit",
    },
)
#: the token call: bad corp id / secret or server IP are permanent
TOKEN_ERRORS = ErrorTable(permanent=frozenset({40001, 40013, 40091, 60020}))
WECOM_ORIGIN = "https://qyapi.weixin.qq.com"


def button_key(value: dict[str, Any]) -> str:
    """What a ``button_interaction`` button sends back as ``EventKey`` (at most 1024 bytes): the
    value's one-string form (``key``, e.g. ``cxhub:12:ack:<signed token>``), else its JSON."""
    key = value.get("key")
    text = key if isinstance(key, str) and key else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > 1024:
        raise PermanentError("a button value is over the 1024 bytes WeCom allows in a button key", code="button_key")
    return text


def template_card(message: OutboundMessage) -> dict[str, Any]:
    """A ``button_interaction`` template card (应用消息 / 模板卡片): title, text, and a button per
    ``Button``: callback buttons (``type`` 0, their ``key`` comes back in ``template_card_event``)
    for buttons with a value, link buttons (``type`` 1) for the others. ``task_id`` (unique per app,
    ``[0-9A-Za-z_-@]``, at most 128 bytes) is derived from the message key, so a resend of the same
    message reuses it."""
    buttons: list[dict[str, Any]] = []
    for i, b in enumerate(message.buttons[:6]):
        item: dict[str, Any] = {"text": b.label[:10], "style": 1 if i == 0 else 2}
        if b.value is not None:
            item.update(type=0, key=button_key(b.value))
        else:
            item.update(type=1, url=b.url)
        buttons.append(item)
    rows, rest = _fields(message.body)
    card: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": (message.title or "cxhub")[:26]},
        "sub_title_text": flatten_markdown("\n".join(rest))[:112],
        "task_id": "cxhub-" + hashlib.sha256(message.key.encode("utf-8")).hexdigest()[:40],
        "button_list": buttons,
    }
    if rows:
        card["horizontal_content_list"] = rows
    if message.url:
        card["card_action"] = {"type": 1, "url": message.url}
    return card


_FIELD = re.compile(r"^\s*[-*]\s+\*\*(?P<k>[^*]{1,12})\*\*[：:]\s*(?P<v>.+)$")


def _fields(body: str) -> tuple[list[dict[str, str]], list[str]]:
    """``- **门店**：徐汇店`` lines as ``horizontal_content_list`` rows (at most 6, keyname 5 and
    value 26 characters as WeCom shows them); the other lines stay text."""
    rows: list[dict[str, str]] = []
    rest: list[str] = []
    for line in body.splitlines():
        m = _FIELD.match(line)
        if m and len(rows) < 6:
            rows.append({"keyname": m["k"][:5], "value": flatten_markdown(m["v"])[:26]})
        elif line.strip():
            rest.append(line)
    return rows, rest


class WeComAppOptions(DestinationOptions):
    """A self-built app: ``corp_id``, its ``secret`` and ``agent_id``."""

    corp_id: str
    secret: SecretStr
    agent_id: int
    base_url: str = WECOM_ORIGIN
    duplicate_check_seconds: int = Field(default=1800, ge=0, le=4 * 3600, description="0 disables")


class WeComAppMessage(HttpDestination):
    """WeCom app message to member user ids (wechatpy; token in the store; 30/min per member)."""

    kind = "wecom_app"
    title = "WeCom app message (wechatpy; markdown / textcard to member ids)"
    Options = WeComAppOptions
    options: WeComAppOptions
    requires = ("wechatpy",)
    staff_facing = True
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (
        RateLimit(30, 60, scope="recipient"),
        RateLimit(1000, 3600, scope="recipient"),
    )
    max_body_bytes: ClassVar[int | None] = 2048

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokens = TokenCache(
            self.context.kv,
            f"wecom:{self.options.corp_id}:{self.options.agent_id}",
            self._fetch_token,
            clock=self.context.clock,
        )
        self._local = threading.local()  # wechatpy clients hold per-call state: one per sending thread

    @property
    def sdk(self) -> Any:
        """wechatpy's WeCom client on our transport (token injected per call)."""
        if getattr(self._local, "sdk", None) is None:
            from wechatpy.enterprise import WeChatClient

            sdk = WeChatClient(
                self.options.corp_id,
                "unused",
                access_token="-",  # noqa: S106 - placeholder; the store's token is set per call
                timeout=self.options.timeout,
                auto_retry=False,
            )
            route_sdk_through(sdk, self.client, {WECOM_ORIGIN: self.options.base_url})
            self._local.sdk = sdk
        return self._local.sdk

    def _fetch_token(self, force: bool) -> tuple[str, float]:
        data, _ = call_json(
            self.client,
            "GET",
            self.options.base_url.rstrip("/") + "/cgi-bin/gettoken",
            target=self.name,
            params={"corpid": self.options.corp_id, "corpsecret": self.options.secret.get_secret_value()},
        )
        return token_answer(data, TOKEN_ERRORS, target=self.name)

    def render(self, message: OutboundMessage) -> dict[str, Any]:
        """The ``msg`` part of the call."""
        msg: dict[str, Any]
        link = message.url or (message.buttons[0].url if message.buttons else None)
        if any(b.value is not None for b in message.buttons):
            msg = {"msgtype": "template_card", "template_card": template_card(message)}
        elif link:
            label = message.buttons[0].label if message.buttons else "详情"
            msg = {
                "msgtype": "textcard",
                "textcard": {
                    "title": trim_utf8(message.title or "cxhub", 128),
                    "description": trim_utf8(flatten_markdown(message.body), 512),
                    "url": link,
                    "btntxt": trim_utf8(label, 12),
                },
            }
        else:
            msg = {"msgtype": "markdown", "markdown": {"content": trim_utf8(markdown_with_links(message), 2048)}}
        if self.options.duplicate_check_seconds:
            msg.update(enable_duplicate_check=1, duplicate_check_interval=self.options.duplicate_check_seconds)
        return msg

    def _call(self, token: str, message: OutboundMessage) -> dict[str, Any]:
        sdk = self.sdk
        sdk.session.set(sdk.access_token_key, token)
        sdk._http.headers.update(self.headers(message))
        with sdk_errors(ERRORS, target=self.name):
            result: dict[str, Any] = sdk.message.send(self.options.agent_id, message.to, msg=self.render(message))
        return result

    def send(self, message: OutboundMessage) -> Receipt:
        """Send to the member ids in ``message.to``."""
        if not message.to:
            raise PermanentError("no recipient: app messages need member ids in `to`", target=self.name)
        result = self.tokens.call(lambda token: self._call(token, message))
        invalid = [u for u in str(result.get("invaliduser") or "").split("|") if u]
        if invalid and set(invalid) >= set(message.to):
            raise PermanentError("no valid recipient (invaliduser)", target=self.name, code="invaliduser")
        detail = f"invalid users: {len(invalid)}" if invalid else "errcode 0"
        return Receipt(message_id=str(result.get("msgid") or "") or None, detail=detail)
