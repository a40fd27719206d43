"""Base classes for destination connectors: shared options and an HTTP client from the context.

Connectors import this, :mod:`hub.sdk.policy` (error tables), :mod:`hub.sdk.render`
(text helpers), :mod:`hub.sdk.http` and :mod:`hub.sdk.tokens`: the delivery part of the
connector API. None of them knows a platform.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from hub.sdk.connector import ConnectorOptions, Destination, OutboundMessage
from hub.sdk.http import IDEMPOTENCY_HEADER

if TYPE_CHECKING:
    import httpx


class DestinationOptions(ConnectorOptions):
    """Options every destination has."""

    mask_personal_data: bool | None = Field(
        default=None,
        description="mask phone numbers in title/body; default: yes for staff-facing destinations",
    )
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per platform call")


class HttpDestination(Destination):
    """A destination talking HTTP through the context's (injectable) transport."""

    #: messages read by staff (robots, work notices): personal data is masked by default
    staff_facing: ClassVar[bool] = False
    #: several queued messages may be combined into one (group robots); not for templates
    supports_digest: ClassVar[bool] = False
    options: DestinationOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The connector's HTTP client, created on first use and shared by the sending threads
        (httpx clients are thread-safe): one keep-alive connection pool per destination."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self.context.http_client(timeout=self.options.timeout)
        return self._client

    def headers(self, message: OutboundMessage) -> dict[str, str]:
        """Headers for a platform call carrying ``message``."""
        return {IDEMPOTENCY_HEADER: message.key}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


__all__ = ["DestinationOptions", "HttpDestination"]
