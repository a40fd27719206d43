"""Feishu / Lark (飞书) event subscription v2 (and v1) plus card action callbacks.

- ``url_verification``: ``{"challenge", "token", "type"}`` (encrypted when an Encrypt Key is set)
  is answered ``{"challenge": ..}`` after the verification token is checked; nothing is stored.
- With an Encrypt Key, every other push must carry ``X-Lark-Request-Timestamp``,
  ``X-Lark-Request-Nonce`` and ``X-Lark-Signature = sha256_hex(timestamp + nonce + encrypt_key +
  raw body)``; it is checked **before** decryption, then the timestamp window and nonce cache
  apply. The body is decrypted with lark-oapi's ``AESCipher`` (key = SHA256(encrypt_key), IV = first
  16 bytes). Without an Encrypt Key the verification token is the only proof; set one in production.
- The verification token (``header.token`` in v2, ``token`` in v1) must match in every case; it is
  removed from the stored payload.
- Every event type is answered 200 (``{}``), whether or not a mapping cares: lark-oapi's
  ``EventDispatcherHandler`` answers 500 for unregistered types, which makes Feishu retry for 7 h,
  so it is used here only as a cross-check in the tests.
- ``card.action.trigger`` (new card callbacks, never re-pushed): a ``card_action`` touchpoint with
  the action value, the operator and the card token; the reply is ``{}`` or the configured toast.
- Dedup: ``header.event_id`` (v2), ``uuid`` (v1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from hub.errors import PayloadError, SignatureError
from hub.sdk.callbacks import (
    GuardedPushSource,
    PushOptions,
    WrongApp,
    clean,
    content_hash,
    parse_epoch,
    same,
)
from hub.sdk.connector import InboundRequest, PushResult, RawRecord, Reply


class FeishuEventOptions(PushOptions):
    """``verification_token`` and ``encrypt_key`` from 事件与回调 > 加密策略; ``app_id`` (optional)
    is cross-checked against ``header.app_id``; ``card_toast``: text of the toast a card action
    shows (none: an empty ``{}`` reply)."""

    verification_token: SecretStr
    encrypt_key: SecretStr | None = None
    app_id: str | None = None
    card_toast: str | None = None


def feishu_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``sha256_hex(timestamp + nonce + encrypt_key + body)`` (Feishu's event signature)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


class FeishuEventSource(GuardedPushSource):
    """Feishu / Lark event subscription (v2 and v1) and card action callbacks (card.action.trigger)."""

    kind = "feishu_events"
    title = "Feishu / Lark events and card callbacks (Encrypt Key, X-Lark-Signature, lark-oapi)"
    Options = FeishuEventOptions
    options: FeishuEventOptions
    requires = ("lark_oapi",)
    default_mapping = "feishu_events"
    content_types = ("application/json",)
    max_body_bytes = 512 * 1024

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._token = self.options.verification_token.get_secret_value()
        key = self.options.encrypt_key
        self._encrypt_key = key.get_secret_value() if key else None
        self._cipher: Any = None
        if self._encrypt_key:
            from lark_oapi.core.utils import AESCipher

            self._cipher = AESCipher(self._encrypt_key)

    # ------------------------------------------------------------ verification

    def _json(self, raw: bytes | str, what: str) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PayloadError(f"{what} is not JSON", source=self.name) from None
        if not isinstance(data, dict):
            raise PayloadError(f"{what} is not a JSON object", source=self.name)
        return data

    def _decrypt(self, encrypt: Any) -> dict[str, Any]:
        if not isinstance(encrypt, str) or not encrypt:
            raise SignatureError("encrypt is missing", source=self.name)
        try:
            plain = self._cipher.decrypt(base64.b64decode(encrypt, validate=True)).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise SignatureError("cannot decrypt (check encrypt_key)", source=self.name) from None
        return self._json(plain, "decrypted body")

    def _check_signature(self, request: InboundRequest) -> datetime:
        ts = request.headers.get("x-lark-request-timestamp", "")
        nonce = request.headers.get("x-lark-request-nonce", "")
        signature = request.headers.get("x-lark-signature")
        if not signature:
            raise SignatureError("X-Lark-Signature is missing", source=self.name)
        assert self._encrypt_key is not None
        if not same(signature, feishu_signature(ts, nonce, self._encrypt_key, request.body)):
            raise SignatureError("X-Lark-Signature does not match", source=self.name)
        sent = parse_epoch(ts, field="X-Lark-Request-Timestamp", source=self.name)
        self.guard(request, sent, nonce, signature)
        return sent

    def _check_token(self, token: Any) -> None:
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token.encode()):
            raise WrongApp("verification token does not match", source=self.name)

    # ------------------------------------------------------------ handling

    def handle(self, request: InboundRequest) -> PushResult:
        envelope = self._json(request.body, "body")
        signed = False
        if self._encrypt_key:
            if "encrypt" not in envelope:
                raise SignatureError("plain push refused: encrypt_key is set", source=self.name)
            if request.headers.get("x-lark-signature"):
                self._check_signature(request)  # signature first, before any decryption
                signed = True
            data = self._decrypt(envelope["encrypt"])
        else:
            data = envelope
        header = data.get("header") if isinstance(data.get("header"), dict) else None
        token = header.get("token") if header is not None else data.get("token")
        self._check_token(token)
        if data.get("type") == "url_verification":
            challenge = data.get("challenge")
            if not isinstance(challenge, str):
                raise PayloadError("challenge is missing", source=self.name)
            return PushResult([], Reply.json({"challenge": challenge}))
        if self._encrypt_key and not signed:
            # only the URL check may come unsigned once an Encrypt Key is set
            raise SignatureError("X-Lark-Signature is missing", source=self.name)
        if self.options.app_id and header is not None and header.get("app_id") not in (None, self.options.app_id):
            raise WrongApp("header.app_id is not the configured app_id", source=self.name)
        stored = clean(_without_token(data))
        stored["create_time_ms"] = _create_time_ms(data)
        record = RawRecord(self.name, self._event_id(data, request), stored, request.received_at)
        return PushResult([record], self._reply(header))

    def _event_id(self, data: dict[str, Any], request: InboundRequest) -> str:
        header = data.get("header")
        if isinstance(header, dict) and header.get("event_id"):
            return str(header["event_id"])
        if data.get("uuid"):
            return str(data["uuid"])
        return content_hash(request.body)

    def _reply(self, header: dict[str, Any] | None) -> Reply:
        event_type = header.get("event_type") if header else None
        if event_type == "card.action.trigger" and self.options.card_toast:
            return Reply.json({"toast": {"type": "info", "content": self.options.card_toast}})
        return Reply.json({})


def _without_token(data: dict[str, Any]) -> dict[str, Any]:
    """The payload minus the verification token (a credential, never stored)."""
    out = {k: v for k, v in data.items() if k != "token"}
    header = out.get("header")
    if isinstance(header, dict):
        out["header"] = {k: v for k, v in header.items() if k != "token"}
    return out


def _create_time_ms(data: dict[str, Any]) -> int | None:
    """When the event happened, in ms: ``header.create_time`` (v2) or ``ts`` seconds (v1)."""
    header = data.get("header")
    raw = header.get("create_time") if isinstance(header, dict) else None
    try:
        if raw is not None:
            return int(raw)
        if data.get("ts") is not None:
            return int(float(data["ts"]) * 1000)
    except (TypeError, ValueError, OverflowError):
        return None
    return None
