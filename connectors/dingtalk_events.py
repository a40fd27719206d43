"""DingTalk (钉钉) HTTP event subscription: encrypted JSON callbacks, same AES scheme as WeChat's.

``POST /hooks/{source}?signature|msg_signature&timestamp|timeStamp&nonce`` with ``{"encrypt": ..}``.
The signature covers the ciphertext; DingTalk timestamps are in milliseconds. The plaintext is sealed
for the app key (event subscription of an internal app), the corp id (legacy callback registration)
or the suite key (ISV apps): set ``app_key`` to the one DingTalk uses for you.

Every callback, including the ``check_url`` DingTalk sends when the URL is saved, must be answered
within 1.5 s with ``{"msg_signature", "timeStamp", "nonce", "encrypt": enc("success")}``; anything
else is ``71009 返回文本非success``. ``check_url`` stores nothing.

The envelope is not signed (the signature covers ``encrypt`` only), so an envelope that is not
JSON is a 400 with nothing stored. Once the signature checks, a plaintext that does not parse (not
UTF-8, not JSON, not an object, nested too deeply) is quarantined with its raw bytes and answered
with the encrypted ``success``: DingTalk would otherwise retry something that never parses.

Events that matter to cases: approval changes (``bpms_task_change`` / ``bpms_instance_change``) and
interactive-card callbacks (``{"type": "actionCallback", "outTrackId", "userId", "content":
"{\"cardPrivateData\": {\"actionIds\", \"params\"}}"}``, where ``userId`` is who pressed) are mapped to
``card_action`` touchpoints by the preset mapping. A card callback carries no time of its own: it
gets the signed query's ``timestamp`` as ``timeStamp``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Any

from pydantic import SecretStr, field_validator

from hub.errors import PayloadError, SignatureError
from hub.sdk.callbacks import (
    GuardedPushSource,
    MsgCrypt,
    PushOptions,
    check_encoding_aes_key,
    clean,
    content_hash,
    parse_epoch,
    parse_json,
    query_value,
    unparsable,
    wx_signature,
)
from hub.sdk.connector import InboundRequest, PushResult, RawRecord, Reply


class DingTalkEventOptions(PushOptions):
    """``token`` and ``encoding_aes_key`` from the app's 事件订阅 page; ``app_key``: the receive id."""

    token: SecretStr
    encoding_aes_key: SecretStr
    app_key: str

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, v: SecretStr) -> SecretStr:
        checked = check_encoding_aes_key(v)
        assert checked is not None
        return checked


def dingtalk_event_id(event: dict[str, Any], plaintext: str) -> str:
    """Dedup key: the event's own id, else what identifies an approval / card action, else a hash."""
    etype = str(event.get("EventType") or event.get("eventType") or "event")
    for key in ("eventId", "EventId", "event_id"):
        if event.get(key):
            return str(event[key])
    if event.get("processInstanceId"):
        parts = [etype, str(event["processInstanceId"])]
        parts += [str(event[k]) for k in ("taskId", "type", "result") if event.get(k)]
        return ":".join(parts)
    canonical = json.dumps(event, sort_keys=True, ensure_ascii=False)
    if event.get("outTrackId"):
        return ":".join([etype, str(event["outTrackId"]), str(event.get("userId", "")), content_hash(canonical)])
    return f"{etype}:{content_hash(canonical or plaintext)}"


class DingTalkEventSource(GuardedPushSource):
    """DingTalk HTTP event subscription (encrypted JSON, ``check_url``, encrypted ``success``)."""

    kind = "dingtalk_events"
    title = "DingTalk HTTP event subscription (encrypted JSON callbacks, approvals, card actions)"
    Options = DingTalkEventOptions
    options: DingTalkEventOptions
    requires = ("wechatpy",)
    default_mapping = "dingtalk_events"
    content_types = ("application/json", "text/plain")
    max_body_bytes = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.crypt = MsgCrypt(
            self.options.token.get_secret_value(),
            self.options.encoding_aes_key.get_secret_value(),
            self.options.app_key,
            source=self.name,
        )

    def success_reply(self) -> Reply:
        """The encrypted ``success`` DingTalk requires for every callback."""
        ts = str(int(self.context.clock().timestamp() * 1000))
        nonce = secrets.token_hex(8)
        encrypt = self.crypt.encrypt("success")
        return Reply.json(
            {
                "msg_signature": wx_signature(self.crypt.token, ts, nonce, encrypt),
                "timeStamp": ts,
                "nonce": nonce,
                "encrypt": encrypt,
            }
        )

    def handle(self, request: InboundRequest) -> PushResult:
        signature = query_value(request, "msg_signature", "signature")
        ts = query_value(request, "timestamp", "timeStamp") or ""
        nonce = query_value(request, "nonce") or ""
        try:
            envelope = json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise PayloadError('body is not the JSON envelope {"encrypt": ..}', source=self.name) from None
        encrypt = envelope.get("encrypt") if isinstance(envelope, dict) else None
        if not isinstance(encrypt, str) or not encrypt:
            raise SignatureError("encrypt is missing", source=self.name)
        self.crypt.check(signature, ts, nonce, encrypt)
        self.guard(request, parse_epoch(ts, field="timestamp", source=self.name, millis=True), nonce, signature)
        plaintext = self.crypt.decrypt_bytes(encrypt)
        # verified from here on: what does not parse is quarantined and still answered "success"
        try:
            event = clean(parse_json(plaintext, what="plaintext", source=self.name))
            content = event.get("content")
            if isinstance(content, str) and content.lstrip().startswith("{"):
                # card callbacks carry their action as a JSON string; mappings need it as data
                with contextlib.suppress(ValueError, RecursionError):
                    event["content_json"] = json.loads(content)
            ext = dingtalk_event_id(event, plaintext.decode("utf-8"))
            if not any(event.get(k) for k in ("finishTime", "createTime", "TimeStamp", "timeStamp")):
                # an interactive card's callback carries no time of its own: the signed query's is when
                # (added after the dedup key, which a retry with a new timestamp must keep)
                event["timeStamp"] = ts
        except PayloadError as exc:
            return PushResult([], self.success_reply(), rejected=[unparsable(plaintext, exc.reason)])
        except RecursionError:  # a structure just under the parser's depth limit, too deep to walk
            bad = unparsable(plaintext, "plaintext is nested too deeply")
            return PushResult([], self.success_reply(), rejected=[bad])
        if event.get("EventType") == "check_url":
            return PushResult([], self.success_reply())
        return PushResult([RawRecord(self.name, ext, event, request.received_at)], self.success_reply())
