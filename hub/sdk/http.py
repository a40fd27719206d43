"""HTTP plumbing for destinations: one place that turns transport failures and HTTP statuses into
the error tree, and an adapter that lets ``requests``-based SDKs (wechatpy) use the hub's injected
httpx transport (so respx / ``httpx.MockTransport`` work for them too).

Error messages never contain the URL: robot URLs carry their secret (``access_token``, ``key``,
Feishu's hook id), and every httpx exception text quotes it, so none is passed on.

``requests`` and ``httpx`` (each 70-100 ms to import) are imported where a call needs them, not
with this module, so that loading a connector class (every CLI command does, to validate the
config) stays cheap.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hub.errors import PermanentError, RetriableError
from hub.sdk.policy import ErrorTable, Throttled, parse_retry_after

if TYPE_CHECKING:
    import httpx
    import requests

#: every outbound request carries the message's idempotency key here; platforms ignore it, the
#: local fakes count it (and log readers can correlate a platform call with an outbox row)
IDEMPOTENCY_HEADER = "X-Cxhub-Idempotency-Key"


def check_status(response: httpx.Response, *, target: str) -> None:
    """Raise for a non-2xx status: 429 -> Throttled, 408/5xx -> retriable, other 4xx -> permanent.
    Retry-After (or Feishu's ``x-ogw-ratelimit-reset``) is passed on."""
    status = response.status_code
    if status < 300:
        return
    retry_after = parse_retry_after(
        response.headers.get("retry-after") or response.headers.get("x-ogw-ratelimit-reset")
    )
    if status == 429:
        raise Throttled(f"HTTP {status} too many requests", target=target, code=status, retry_after=retry_after)
    if status == 408 or status >= 500:
        raise RetriableError(f"HTTP {status} from the platform", target=target, code=status, retry_after=retry_after)
    raise PermanentError(f"HTTP {status} from the platform", target=target, code=status)


def call(client: httpx.Client, method: str, url: str, *, target: str, **kwargs: Any) -> httpx.Response:
    """``client.request`` with transport failures as ``RetriableError`` (never showing the URL)."""
    import httpx

    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetriableError(f"timed out ({type(exc).__name__})", target=target) from None
    except httpx.TransportError as exc:
        raise RetriableError(f"cannot reach the platform ({type(exc).__name__})", target=target) from None
    except httpx.InvalidURL:
        raise PermanentError("the configured URL is not valid", target=target) from None
    except httpx.HTTPError as exc:  # too many redirects, an undecodable body...: texts that quote the URL
        raise RetriableError(f"the request failed ({type(exc).__name__})", target=target) from None


def call_json(
    client: httpx.Client, method: str, url: str, *, target: str, allow_error_status: bool = False, **kwargs: Any
) -> tuple[dict[str, Any], httpx.Response]:
    """Send and parse a JSON object answer. ``allow_error_status``: parse the body of a 4xx too
    (platforms that put their error code in a 400 body)."""
    response = call(client, method, url, target=target, **kwargs)
    if not (allow_error_status and 400 <= response.status_code < 500 and response.status_code != 429):
        check_status(response, target=target)
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        check_status(response, target=target)
        raise RetriableError(f"HTTP {response.status_code} answer is not JSON", target=target) from None
    if not isinstance(data, dict):
        raise RetriableError("answer is not a JSON object", target=target)
    return data, response


class HttpxAdapter:
    """A ``requests`` transport adapter that sends through an ``httpx.Client``.

    Mount it on an SDK's ``requests.Session`` (``session.mount("https://", HttpxAdapter(client))``)
    and the SDK uses the hub's injected transport, timeouts included. ``rewrite`` maps the SDK's
    hard-coded origin (``https://api.weixin.qq.com``) to the configured base URL.

    It implements the adapter interface (``send``, ``close``) without subclassing
    ``requests.adapters.BaseAdapter``, which would import ``requests`` with this module.
    """

    def __init__(self, client: httpx.Client, rewrite: dict[str, str] | None = None):
        self.client = client
        self.rewrite = {k.rstrip("/"): v.rstrip("/") for k, v in (rewrite or {}).items()}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        import httpx
        import requests
        from requests.structures import CaseInsensitiveDict

        timeout = kwargs.get("timeout")
        raw = request.body
        body: bytes | None = raw.encode("utf-8") if isinstance(raw, str) else raw if isinstance(raw, bytes) else None
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()}
        url = request.url or ""
        for origin, base in self.rewrite.items():
            if url.startswith(origin + "/"):
                url = base + url[len(origin) :]
        try:
            resp = self.client.request(
                request.method or "GET",
                url,
                headers=headers,
                content=body,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise requests.Timeout(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise requests.ConnectionError(f"cannot reach the platform ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:  # its text quotes the URL, and so the SDK's token
            raise requests.RequestException(f"the request failed ({type(exc).__name__})") from None
        out = requests.Response()
        out.status_code = resp.status_code
        out.headers = CaseInsensitiveDict(resp.headers)
        out._content = resp.content
        out.encoding = resp.encoding
        out.url = request.url or ""
        out.request = request
        out.reason = resp.reason_phrase
        return out

    def close(self) -> None:
        """The httpx client belongs to the connector; it closes it."""


def route_sdk_through(sdk: Any, client: httpx.Client, rewrite: dict[str, str]) -> None:
    """Make a wechatpy-style SDK client (one that sends through ``sdk._http``, a ``requests``
    session) send through ``client`` instead, with its hard-coded origin rewritten."""
    import requests

    adapter = HttpxAdapter(client, rewrite=rewrite)
    session = requests.Session()
    session.mount("http://", adapter)  # type: ignore[arg-type]  # an adapter by interface (see HttpxAdapter)
    session.mount("https://", adapter)  # type: ignore[arg-type]
    sdk._http = session


def check_requests_status(response: requests.Response, *, target: str) -> None:
    """:func:`check_status` for a ``requests`` response (what requests-based SDKs hand back)."""
    import httpx

    check_status(
        httpx.Response(response.status_code, headers=dict(response.headers), content=response.content), target=target
    )


@contextlib.contextmanager
def sdk_errors(errors: ErrorTable, *, target: str) -> Iterator[None]:
    """Failures of a wechatpy call inside the block as the error tree: an HTTP failure by its
    status, a platform ``errcode`` through ``errors`` (a refused token is ``TokenExpired``),
    transport failures retriable (never showing the URL)."""
    import requests
    from wechatpy.exceptions import WeChatClientException

    try:
        yield
    except WeChatClientException as exc:
        if exc.errcode is None and exc.response is not None:  # HTTP-level failure
            check_requests_status(exc.response, target=target)
        errors.check(int(exc.errcode if exc.errcode is not None else -1), str(exc.errmsg or ""), target=target)
        raise
    except requests.RequestException as exc:
        raise RetriableError(f"cannot reach the platform ({type(exc).__name__})", target=target) from None


__all__ = [
    "IDEMPOTENCY_HEADER",
    "HttpxAdapter",
    "call",
    "call_json",
    "check_requests_status",
    "check_status",
    "route_sdk_through",
    "sdk_errors",
]
