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
- Verified means kept: once ``X-Lark-Signature`` checks (it covers the raw body), a push that does
  not parse (a body that is not the JSON envelope, a ciphertext that does not decrypt, a plaintext
  that is not UTF-8, not JSON or not an object) is quarantined with its raw bytes (the
  verification token masked) and answered ``{}``: Feishu retries anything but a 200 for hours.
  Unsigned input (the URL check, or any push without an Encrypt Key) is proven only by the token
  inside it, so what does not parse far enough to show the token is a 400, nothing stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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
    parse_json,
    same,
    unparsable,
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
        data: dict[str, Any] = parse_json(raw, what=what, source=self.name)
        return data

    def _decrypt(self, encrypt: Any) -> bytes:
        """Decrypt an *unsigned* push (the URL check): failures are refusals."""
        if not isinstance(encrypt, str) or not encrypt:
            raise SignatureError("encrypt is missing", source=self.name)
        try:
            plain = self._decrypt_bytes(encrypt)
            plain.decode("utf-8")
        except (PayloadError, UnicodeDecodeError):
            raise SignatureError("cannot decrypt (check encrypt_key)", source=self.name) from None
        return plain

    def _decrypt_bytes(self, encrypt: str) -> bytes:
        try:
            return bytes(self._cipher.decrypt(base64.b64decode(encrypt, validate=True)))
        except (binascii.Error, ValueError):
            raise PayloadError("encrypt does not decrypt", source=self.name) from None

    def _masked(self, raw: bytes) -> bytes:
        """``raw`` without the verification token (a credential, never stored)."""
        return raw.replace(self._token.encode("utf-8"), b"***") if self._token else raw

    def _open_signed(self, request: InboundRequest) -> tuple[dict[str, Any], bytes] | PushResult:
        """The event (and its plaintext) of a push whose signature checked, or the quarantine of
        what does not parse."""
        raw = request.body
        try:
            envelope = self._json(raw, "body")
            encrypt = envelope.get("encrypt")
            if not isinstance(encrypt, str) or not encrypt:
                raise PayloadError("signed body has no encrypt field", source=self.name)
            raw = self._decrypt_bytes(encrypt)
            return self._json(raw, "decrypted body"), raw
        except PayloadError as exc:
            reason = exc.reason
        return PushResult([], Reply.json({}), rejected=[unparsable(self._masked(raw), reason)])

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
        signed = False
        if self._encrypt_key and request.headers.get("x-lark-signature"):
            self._check_signature(request)  # signature over the raw body, before parsing anything
            signed = True
            opened = self._open_signed(request)
            if isinstance(opened, PushResult):
                return opened
            data, plaintext = opened
        else:
            envelope = self._json(request.body, "body")
            plaintext = request.body
            if self._encrypt_key:
                if "encrypt" not in envelope:
                    raise SignatureError("plain push refused: encrypt_key is set", source=self.name)
                plaintext = self._decrypt(envelope["encrypt"])
                data = self._json(plaintext, "decrypted body")
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
        try:
            stored = clean(_without_token(data))
        except RecursionError:  # a structure just under the parser's depth limit, too deep to walk
            bad = unparsable(self._masked(plaintext), "event is nested too deeply")
            return PushResult([], Reply.json({}), rejected=[bad])
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
