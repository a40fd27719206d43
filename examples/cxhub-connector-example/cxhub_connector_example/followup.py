"""Follow-up notes posted back to the NPS vendor: a destination.

When a detractor's answer opens a case in cxhub, the store manager's note goes back to the vendor,
so the vendor's dashboard shows the answer as followed up::

    POST {base_url}/v1/followups
    Authorization: Bearer {api_key}
    Idempotency-Key: {message.key}
    {"answer_id": "ans_0001", "title": "...", "note": "...", "assignee": "u1", "link": "..."}

    201 {"ok": true, "followup_id": "fu_1"}
    200 {"ok": false, "error": {"code": "rate_limited", "message": "..."}}

The vendor deduplicates on ``Idempotency-Key``: a retry after a timeout never posts twice.
"""

from __future__ import annotations

from typing import ClassVar

from hub.sdk import (
    ConnectorOptions,
    DestinationOptions,
    ErrorTable,
    HttpDestination,
    OutboundMessage,
    PermanentError,
    RateLimit,
    Receipt,
    call_json,
    flatten_markdown,
    trim_utf8,
)
from pydantic import Field, SecretStr

#: the vendor's error codes inside a 200 answer
ERRORS = ErrorTable(
    ok=frozenset({"ok"}),
    throttle=frozenset({"rate_limited"}),
    retry=frozenset({"busy"}),
    permanent=frozenset({"answer_not_found", "invalid_note"}),
    default="permanent",
    reasons={"answer_not_found": "the vendor has no such answer (deleted, or another account's)"},
    throttle_seconds=30.0,
)

#: the vendor's limit on a note
MAX_NOTE_BYTES = 4000


class FollowUpOptions(DestinationOptions):
    """Options of the ``example_nps_followup`` destination."""

    base_url: str = Field(description="the vendor's API root, e.g. https://api.nps-vendor.cn")
    api_key: SecretStr = Field(description="API key (Bearer token) from the vendor's console")


class NpsFollowUpDestination(HttpDestination):
    """Follow-up notes on NPS answers, posted back to the survey vendor (the message's
    ``data.answer_id`` names the answer; ``to``: at most one assignee)."""

    kind = "example_nps_followup"
    title = "Follow-up notes on NPS answers, posted back to the survey vendor"
    Options: ClassVar[type[ConnectorOptions]] = FollowUpOptions
    options: FollowUpOptions

    #: the vendor allows 10 calls per second per API key
    rate_limits = (RateLimit(limit=10, per_seconds=1.0),)
    max_body_bytes = MAX_NOTE_BYTES
    #: notes are read by the vendor's users: phone numbers are masked unless configured otherwise
    staff_facing = True

    def send(self, message: OutboundMessage) -> Receipt:
        answer_id = message.data.get("answer_id")
        if not answer_id:
            raise PermanentError("the message names no data.answer_id", target=self.name)
        if len(message.to) > 1:
            raise PermanentError("a follow-up has at most one assignee", target=self.name)
        body = {
            "answer_id": str(answer_id),
            "title": message.title,
            "note": trim_utf8(flatten_markdown(message.body), MAX_NOTE_BYTES),
            "assignee": message.to[0] if message.to else None,
            "link": message.url or (message.buttons[0].url if message.buttons else None),
        }
        headers = {
            **self.headers(message),
            "Authorization": f"Bearer {self.options.api_key.get_secret_value()}",
            "Idempotency-Key": message.key,
        }
        url = self.options.base_url.rstrip("/") + "/v1/followups"
        # statuses and transport failures -> RetriableError / Throttled / PermanentError (no URL shown)
        data, _ = call_json(self.client, "POST", url, target=self.name, json=body, headers=headers)
        if data.get("ok") is True:
            followup_id = data.get("followup_id")
            return Receipt(message_id=str(followup_id) if followup_id else None, detail="follow-up posted")
        error = data.get("error")
        if not isinstance(error, dict):
            error = {}
        ERRORS.check(str(error.get("code") or "unknown"), str(error.get("message") or ""), target=self.name)
        # an error object whose code reads "ok": the vendor contradicts itself
        raise PermanentError("the vendor answered neither ok nor a usable error", target=self.name)


__all__ = ["ERRORS", "FollowUpOptions", "NpsFollowUpDestination"]
