"""The operator endpoints of ``cxhub run``: ``GET /metrics`` and ``GET /openapi.json``.

They describe the hub to the people who run it, so they are not for everyone who can reach the
port (the platforms post to ``/hooks/...`` on the same port). The rule:

- with an operator token (``CXHUB_OPERATOR_TOKEN`` in the environment, or ``server.operator_token``
  in the config, usually ``${CXHUB_OPERATOR_TOKEN}``), a request must carry
  ``Authorization: Bearer <token>``: 401 otherwise, compared in constant time;
- without one, they answer only while the server listens on a loopback address (the embedded
  default, ``server.host: 127.0.0.1``); a server bound beyond loopback answers 403 and says which
  setting is missing. ``cxhub check`` warns about that config.

``/healthz`` and ``/readyz`` stay open: load balancers and orchestrators call them with no
credentials, and they say nothing but "ok".

The OpenAPI description covers every route of the app, the webhook routes included (they are plain
Starlette routes for speed, so they are described here by hand), with every status code they can
answer, so that a client generator or a fuzzer (the test suite runs schemathesis against a live
``cxhub run``) knows the whole contract.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from hub.config import RawConfig

#: the environment variable that holds the operator token (it wins over the config file)
TOKEN_ENV = "CXHUB_OPERATOR_TOKEN"  # noqa: S105 (the variable's name, not a token)


def operator_token(raw: RawConfig) -> str | None:
    """The configured operator token, or None."""
    token = os.environ.get(TOKEN_ENV) or (
        raw.server.operator_token.get_secret_value() if raw.server.operator_token else None
    )
    return token or None


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches only this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(raw: RawConfig) -> str | None:
    """What ``cxhub check`` says when the operator endpoints would refuse everyone."""
    if operator_token(raw) is None and not is_loopback(raw.server.host):
        return (
            f"server.host {raw.server.host!r} listens beyond this machine and no operator token is set: "
            f"/metrics and /openapi.json will answer 403; set {TOKEN_ENV} (or server.operator_token)"
        )
    return None


def console_cookie_warning(raw: RawConfig) -> str | None:
    """What ``cxhub check`` says when the console's cookies would cross a network in the clear: they
    are marked Secure only when ``server.public_url`` is https."""
    from urllib.parse import urlsplit

    if not raw.console.enabled:
        return None
    url = urlsplit(raw.server.public_url)
    if url.scheme != "https" and not is_loopback(url.hostname or ""):
        return (
            f"server.public_url {raw.server.public_url!r} is not https: the console's session cookies "
            "are not marked Secure and travel in the clear; serve it behind TLS and give the https URL"
        )
    return None


def operator_guard(raw: RawConfig) -> Callable[[Request], None]:
    """A FastAPI dependency that lets only operators through (see the module's rule)."""

    def guard(request: Request) -> None:
        token = operator_token(raw)
        if token is None:
            if is_loopback(raw.server.host):
                return
            raise HTTPException(
                status_code=403,
                detail=f"operator endpoints need an operator token ({TOKEN_ENV}) on a server bound beyond loopback",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(
                status_code=401,
                detail="operator token missing or wrong",
                headers={"WWW-Authenticate": 'Bearer realm="cxhub operator"'},
            )

    return guard


_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _answer(description: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": content or _TEXT}


def _hook_operations() -> dict[str, Any]:
    """``/hooks/{source}``: the push sources' URL (GET: the platform's URL check; POST: a push)."""
    source = {
        "name": "source",
        "in": "path",
        "required": True,
        "description": "the source's name in the config (sources: <name>: connector: ...)",
        "schema": {"type": "string", "pattern": "^[^/]+$"},
    }
    common = {
        "400": _answer("malformed request, or a connector could not read it"),
        "401": _answer("signature, token or timestamp refused"),
        "403": _answer("verified, but not for this source (another app id, a replayed nonce)"),
        "404": _answer("no enabled push source of that name"),
        "405": _answer("this source does not take that method"),
        "413": _answer("body over the source's or the server's limit"),
    }
    reply = _answer(
        "the connector's own answer to the platform (success, an encrypted echo, a challenge)",
        {"*/*": {"schema": {"type": "string"}}},
    )
    return {
        "get": {
            "tags": ["webhooks"],
            "summary": "A platform checks the callback URL (WeChat echostr, DingTalk/Feishu challenges)",
            "operationId": "verify_hook_url",
            "parameters": [source],
            "responses": {"200": reply, **common},
        },
        "post": {
            "tags": ["webhooks"],
            "summary": "A platform pushes events; answered once they are durable",
            "operationId": "push_hook",
            "parameters": [source],
            "requestBody": {
                "required": False,
                "description": "the platform's own body: JSON, XML, or form fields, signed as the connector expects",
                "content": {
                    "application/json": {"schema": {}},
                    "text/xml": {"schema": {"type": "string"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": reply,
                **common,
                "415": _answer("a content type the connector does not accept"),
                "503": _answer("the store or the transport did not take the records in time: the platform retries"),
            },
        },
    }


def publish_openapi(app: FastAPI, raw: RawConfig) -> None:
    """Serve ``GET /openapi.json`` behind the operator guard, with the webhook routes described."""
    guard = operator_guard(raw)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = app.openapi()  # FastAPI builds and caches it on the app
            schema.setdefault("paths", {})["/hooks/{source}"] = _hook_operations()
            for path, item in schema["paths"].items():
                for operation in item.values():
                    if path in ("/metrics", "/openapi.json"):
                        operation.setdefault("security", [{"operator": []}])
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["operator"] = {
                "type": "http",
                "scheme": "bearer",
                "description": f"the operator token ({TOKEN_ENV})",
            }
        return app.openapi_schema or {}

    async def openapi_json(request: Request) -> JSONResponse:
        guard(request)
        return JSONResponse(document())

    app.add_api_route(
        "/openapi.json",
        openapi_json,
        methods=["GET"],
        tags=["operator"],
        summary="This description (operator token)",
        responses={401: {"description": "operator token missing or wrong"}, 403: {"description": "no token set"}},
    )
