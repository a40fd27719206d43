"""NPS answers from a survey vendor's paged JSON API: a pull source with an incremental cursor.

The vendor's changes feed::

    GET {base_url}/v1/answers?limit=100[&cursor=...][&survey_id=...]
    Authorization: Bearer {api_key}

    200 {"data": [{"id": "ans_0001", "score": 9, ...}, ...], "next_cursor": "...", "has_more": true}

``next_cursor`` is opaque and always present: after the last page it marks the end of the feed, so
the next run asks for what arrived since. It is the source's whole state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
from hub.sdk import (
    Batch,
    ConnectorContext,
    ConnectorOptions,
    Duration,
    PermanentError,
    PullSource,
    RawRecord,
    Rejected,
    RetriableError,
    call_json,
)
from pydantic import Field, SecretStr


class NpsOptions(ConnectorOptions):
    """Options of the ``example_nps`` source."""

    base_url: str = Field(description="the vendor's API root, e.g. https://api.nps-vendor.cn")
    api_key: SecretStr = Field(description="API key (Bearer token) from the vendor's console")
    survey_id: str | None = Field(default=None, description="read one survey only; default: all")
    page_size: int = Field(default=100, ge=1, le=100, description="answers per request (the API's maximum is 100)")
    timeout: Duration = Field(default=10.0, gt=0, description="per request, e.g. 10s")


class NpsAnswersSource(PullSource):
    """NPS answers (score 0-10, comment, store, respondent) read from a survey vendor's paged JSON
    API, resuming from the API's cursor. Map them with a ``survey_response`` mapping."""

    kind = "example_nps"
    title = "NPS answers from a survey vendor's paged JSON API (incremental cursor)"
    Options: ClassVar[type[ConnectorOptions]] = NpsOptions
    options: NpsOptions

    def __init__(self, name: str, options: ConnectorOptions, context: ConnectorContext | None = None):
        super().__init__(name, options, context)
        # created on first read: building a connector (``cxhub check``) must not touch the network
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = self.context.http_client(
                self.options.base_url.rstrip("/"),
                timeout=self.options.timeout,
                headers={"Authorization": f"Bearer {self.options.api_key.get_secret_value()}"},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def read(self, state: dict[str, Any] | None, *, full: bool = False) -> Iterator[Batch]:
        """One batch per page; each batch's state is the cursor after its page."""
        cursor = None if full or not state else state.get("cursor")
        while True:
            page = self._page(cursor)
            records, rejected = self._records(page["data"])
            next_cursor = page.get("next_cursor") or cursor
            yield Batch(records, {"cursor": next_cursor} if next_cursor else {}, rejected)
            if not page.get("has_more") or next_cursor == cursor:
                return
            cursor = next_cursor

    def _page(self, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.options.page_size}
        if cursor:
            params["cursor"] = cursor
        if self.options.survey_id:
            params["survey_id"] = self.options.survey_id
        try:
            # transport failures, 408/429/5xx -> RetriableError; other 4xx -> PermanentError
            body, _ = call_json(self.client, "GET", "/v1/answers", target=self.name, params=params)
        except PermanentError as exc:
            if exc.code in (401, 403):
                raise PermanentError(
                    f"the vendor refused the api_key (HTTP {exc.code}); create a new key in its console",
                    target=self.name,
                    code=exc.code,
                ) from None
            if exc.code == 400 and cursor:
                raise PermanentError(
                    "the vendor refused the saved cursor (HTTP 400); run `cxhub sync --full` to start over",
                    target=self.name,
                    code=exc.code,
                ) from None
            raise
        if not isinstance(body.get("data"), list):
            # a gateway's placeholder rather than the API: try again later
            raise RetriableError("answer without a data list", target=self.name)
        return body

    def _records(self, items: list[Any]) -> tuple[list[RawRecord], list[Rejected]]:
        records: list[RawRecord] = []
        rejected: list[Rejected] = []
        received = self.context.clock()
        for item in items:
            answer_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(answer_id, str | int) or answer_id == "":
                rejected.append(Rejected(None, item, "answer without an id"))
                continue
            records.append(RawRecord(self.name, str(answer_id), item, received_at=received))
        return records, rejected


__all__ = ["NpsAnswersSource", "NpsOptions"]
