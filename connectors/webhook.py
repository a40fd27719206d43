"""Generic push source: JSON webhooks signed in the Standard Webhooks format.

Headers ``webhook-id``, ``webhook-timestamp`` (seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, several space-separated allowed). The secret is
``whsec_<base64>``: the key is the base64-decoded part after the prefix. The signature format
comes from the ``standardwebhooks`` library; the HMAC is computed here over the raw body bytes
(the library takes text, which would turn a signed body that is not UTF-8 into a refusal instead
of a quarantine), and the replay window is ours (``tolerance_seconds``, with the hub's clock).
docs/push.md shows how to sign a request.

The body must be ``application/json`` (415 otherwise, before verification; a missing header is
allowed). Once the signature checks, a body that does not parse (not UTF-8, not JSON, nested too
deeply) is quarantined with its raw bytes and answered 200 ``{"ok": true, "received": 0,
"quarantined": 1}``: Standard Webhooks senders retry anything else, and it would never parse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, SecretStr, field_validator

from hub.errors import PayloadError, SignatureError
from hub.sdk.callbacks import clean, parse_json, unparsable
from hub.sdk.connector import ConnectorOptions, InboundRequest, PushResult, PushSource, RawRecord, Reply
from hub.sdk.expressions import compile_expression


class WebhookOptions(ConnectorOptions):
    """``secret``: ``whsec_...``; ``records_path``: JMESPath of a list inside the body (optional)."""

    secret: SecretStr
    tolerance_seconds: float = Field(default=300, ge=0, description="0 disables the timestamp check")
    records_path: str | None = None
    id_path: str | None = Field(default=None, description="id of each record; default: webhook-id (+ index)")

    @field_validator("secret")
    @classmethod
    def _whsec(cls, v: SecretStr) -> SecretStr:
        secret_key(v.get_secret_value())
        return v


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret, decoded as the ``standardwebhooks`` library
    decodes it (prefix optional, padding optional), so that every secret it takes works here."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    except (binascii.Error, ValueError):
        raise ValueError("must be whsec_ followed by base64") from None
    if not key:
        raise ValueError("is empty after the whsec_ prefix")
    return key


class SignedWebhookSource(PushSource):
    """Any system that can POST JSON with a Standard Webhooks signature (survey tools, in-house apps)."""

    kind = "webhook"
    title = "Signed JSON webhook (Standard Webhooks HMAC-SHA256, timestamp window)"
    Options = WebhookOptions
    options: WebhookOptions
    content_types = ("application/json",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._key = secret_key(self.options.secret.get_secret_value())
        self._records = compile_expression(self.options.records_path) if self.options.records_path else None
        self._id = compile_expression(self.options.id_path) if self.options.id_path else None

    def signature(self, msg_id: str, timestamp: str, body: bytes) -> str:
        """``base64(HMAC-SHA256(key, "id.timestamp." + body))``, the value after ``v1,``."""
        mac = hmac.new(self._key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return base64.b64encode(mac).decode("ascii")

    def verify(self, request: InboundRequest) -> str:
        """Check id, timestamp window and signature; returns the webhook id."""
        msg_id = request.headers.get("webhook-id")
        ts = request.headers.get("webhook-timestamp")
        sigs = request.headers.get("webhook-signature")
        if not msg_id or not ts or not sigs:
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header", source=self.name)
        try:
            sent = datetime.fromtimestamp(int(ts), UTC)
        except (ValueError, OverflowError, OSError):
            raise SignatureError("webhook-timestamp is not a Unix timestamp", source=self.name) from None
        window = self.options.tolerance_seconds
        if window and abs((self.context.clock() - sent).total_seconds()) > window:
            raise SignatureError(f"webhook-timestamp outside the {window:g}s window", source=self.name)
        # signed over the timestamp as sent, as the library does (it formats the integer it parsed)
        expected = self.signature(msg_id, str(int(ts)), request.body).encode()
        for sig in sigs.split():
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return msg_id
        raise SignatureError("signature does not match", source=self.name)

    def handle(self, request: InboundRequest) -> PushResult:
        msg_id = self.verify(request)
        # verified from here on: what does not parse is quarantined and still answered 200
        try:
            body = clean(parse_json(request.body, source=self.name, want_object=False))
        except PayloadError as exc:
            return self._quarantined(request, msg_id, exc.reason)
        except RecursionError:  # clean() on a structure just under the parser's depth limit
            return self._quarantined(request, msg_id, "body is JSON nested too deeply")
        items = self._records(body) if self._records else body
        if not isinstance(items, list):
            items = [items]
        records = []
        for i, item in enumerate(items):
            ext = self._id(item) if self._id else None
            if ext is None or ext == "":
                ext = msg_id if len(items) == 1 else f"{msg_id}:{i}"
            records.append(RawRecord(self.name, str(ext), item, request.received_at))
        return PushResult(records, Reply.json({"ok": True, "received": len(records)}))

    def _quarantined(self, request: InboundRequest, msg_id: str, reason: str) -> PushResult:
        bad = unparsable(request.body, reason, external_id=msg_id)
        return PushResult([], Reply.json({"ok": True, "received": 0, "quarantined": 1}), rejected=[bad])
