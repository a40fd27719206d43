"""Generic push source: JSON webhooks signed in the Standard Webhooks format.

Headers ``webhook-id``, ``webhook-timestamp`` (seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, several space-separated allowed). The secret is
``whsec_<base64>``. The signature format comes from the ``standardwebhooks`` library; the replay
window is ours (configurable, with the hub's clock).
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, SecretStr

from hub.errors import PayloadError, SignatureError
from hub.sdk.connector import ConnectorOptions, InboundRequest, PushResult, PushSource, RawRecord, Reply
from hub.sdk.expressions import compile_expression


class WebhookOptions(ConnectorOptions):
    """``secret``: ``whsec_...``; ``records_path``: JMESPath of a list inside the body (optional)."""

    secret: SecretStr
    tolerance_seconds: float = Field(default=300, ge=0, description="0 disables the timestamp check")
    records_path: str | None = None
    id_path: str | None = Field(default=None, description="id of each record; default: webhook-id (+ index)")


class SignedWebhookSource(PushSource):
    """Any system that can POST JSON with a Standard Webhooks signature (survey tools, in-house apps)."""

    kind = "webhook"
    title = "Signed JSON webhook (Standard Webhooks HMAC-SHA256, timestamp window)"
    Options = WebhookOptions
    options: WebhookOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from standardwebhooks.webhooks import Webhook

        self._wh = Webhook(self.options.secret.get_secret_value())
        self._records = compile_expression(self.options.records_path) if self.options.records_path else None
        self._id = compile_expression(self.options.id_path) if self.options.id_path else None

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
        try:
            expected = self._wh.sign(msg_id, sent, request.body.decode("utf-8")).split(",", 1)[1]
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8", source=self.name) from None
        for sig in sigs.split():
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return msg_id
        raise SignatureError("signature does not match", source=self.name)

    def handle(self, request: InboundRequest) -> PushResult:
        msg_id = self.verify(request)
        if request.content_type not in ("application/json", ""):
            raise PayloadError(f"content type {request.content_type!r}: expected application/json", source=self.name)
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"body is not JSON: {exc.msg} at column {exc.colno}", source=self.name) from None
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
