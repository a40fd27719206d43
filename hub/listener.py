"""Bounds on what one HTTP request may make ``cxhub run`` read, enforced by the HTTP parser itself.

uvicorn's httptools protocol has no limit on the request line, the headers or the time a client
takes to send them, and the body limit of :mod:`hub.web` only runs once the app has the request.
:class:`BoundedHttpToolsProtocol` counts as the parser goes and answers before the app is called:

* URL over ``server.max_url_bytes`` -> 414;
* headers over ``server.max_header_bytes`` (names, values and their separators) or more than
  ``server.max_headers`` of them -> 431;
* a declared or streamed (chunked) body over ``server.max_body_bytes`` -> 413, on every route;
* a head not complete ``server.head_timeout_seconds`` after the connection opened or the request
  began, or a body not complete ``server.body_timeout_seconds`` after the head -> 408.

A refused request never reaches the app (or, for a body, the app sees the client disconnect), and
its connection is closed. httptools stays the parser: the webhook throughput depends on it.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any

import httptools
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.config import ServerConfig

log = logging.getLogger("cxhub.web")

REFUSED = Counter(
    "cxhub_http_refused_total", "Requests refused by the listener's bounds before the app ran", ["status"]
)

#: bytes of a head that are neither URL nor headers: method, version, line ends
_REQUEST_LINE_SLACK = 1024
#: how long a refused connection keeps reading (and dropping) what the client still sends, so the
#: client reads the status instead of a connection reset
LINGER_SECONDS = 1.0


class _Refused(Exception):
    """Raised from a parser callback to stop the parser: the answer is already written."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds; built by :func:`protocol_for`."""

    limits: ServerConfig = ServerConfig()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lim = self.limits
        self._max_url = lim.max_url_bytes
        self._max_header_bytes = lim.max_header_bytes
        self._max_headers = lim.max_headers
        self._max_body = lim.max_body_bytes
        self._raw_budget = lim.max_url_bytes + lim.max_header_bytes + _REQUEST_LINE_SLACK
        self._url_bytes = 0
        self._header_bytes = 0
        self._in_head = False  # a request has begun and its headers are not complete
        self._head_raw = 0  # bytes received while in the head, after the chunk it began in
        self._body_bytes = 0
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None

    # -- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # a client that connects and sends nothing holds a connection as surely as a slow one
        self._arm(self.limits.head_timeout_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: drop what the client still sends
        if self._in_head:
            self._head_raw += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refused):
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # httptools buffers a header until its line ends: bound what it may hold meanwhile (the
        # exact limits are checked per header below)
        if self._in_head and self._head_raw > self._raw_budget:
            self._refuse(431)

    def _bad_request(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    # -- parser callbacks

    def on_message_begin(self) -> None:
        self._url_bytes = self._header_bytes = self._head_raw = self._body_bytes = 0
        self._in_head = True
        if self._timer is None:
            self._arm(self.limits.head_timeout_seconds)
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)  # called per piece as the URL arrives
        if self._url_bytes > self._max_url:
            self._stop(414)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and the line end
        if self._header_bytes > self._max_header_bytes or len(self.headers) >= self._max_headers:
            self._stop(431)
        if (
            len(name) == 14
            and name.lower() == b"content-length"
            and value.strip().isdigit()
            and int(value) > self._max_body
        ):
            self._stop(413)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout_seconds)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)  # chunked bodies have no length to check up front
        if self._body_bytes > self._max_body:
            self._stop(413, current=True)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # -- refusing

    def _stop(self, status: int, *, current: bool = False) -> None:
        self._refuse(status, current=current)
        raise _Refused

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        reading_body = cycle is not None and cycle.more_body and not cycle.response_complete
        if self._in_head or reading_body:
            self._refuse(408, current=not self._in_head)
        elif cycle is None or cycle.response_complete:
            self.transport.close()  # connected, then sent nothing

    def _refuse(self, status: int, *, current: bool = False) -> None:
        """Answer ``status`` and close. ``current``: ``self.cycle`` is the refused request's own
        (its body is being read); otherwise it is an earlier request's on this connection. The app
        never runs, or reads a client disconnect; an answer it already began is cut short."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        REFUSED.labels(str(status)).inc()
        log.info("refused a request from %s: %s", self.client[0] if self.client else "?", status)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if current:
            can_answer = cycle is not None and not cycle.response_started
        else:
            can_answer = cycle is None or cycle.response_complete
        if not can_answer or self.transport.is_closing():
            self.transport.close()
            return
        phrase = http.HTTPStatus(status).phrase
        body = f"{phrase}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        # closing with unread input makes the kernel send a reset, and the client may lose the
        # answer with it: end our side, drop its input for a moment, then close
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def protocol_for(limits: ServerConfig) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for these limits."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
