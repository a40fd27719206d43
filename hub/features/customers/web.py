"""The JSON API of the customer view, for the console and for scripts.

``GET /api/customers/at-risk?min_risk=0.6&limit=100`` and ``GET /api/customers/{id}`` (or
``?phone=`` / ``?openid=`` on ``/api/customers/lookup``). These are operator endpoints, guarded
like ``/metrics``: a request carries ``Authorization: Bearer TOKEN``, either a key of
``customers.api_keys`` (its scope, hq, region:ID, district:ID or store:ID, limits what the answer
holds) or the operator token (``CXHUB_OPERATOR_TOKEN``: scope hq); with neither configured, they
answer only on a server bound to loopback (:mod:`hub.operator`). A customer outside the scope is a
404, the same as one that does not exist. Personal data is always masked here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder

from hub.features.customers.access import HQ, CustomerNotFound, Scope

if TYPE_CHECKING:
    from hub.features.customers.service import CustomerService


def build_router(service: CustomerService, raw: Any = None) -> APIRouter:
    """The routes; ``raw`` is the core config (``rt.config.raw``) the operator guard reads."""
    router = APIRouter(
        prefix="/api/customers",
        tags=["customers"],
        responses={
            401: {"description": "no valid bearer token"},
            403: {"description": "no operator token set on a server bound beyond loopback"},
            404: {"description": "no such customer in your scope"},
        },
    )
    guard = _operator_guard(raw)

    def scope(request: Request, authorization: str | None) -> Scope:
        scheme, _, token = (authorization or "").partition(" ")
        found = service.scope_of_token(token.strip()) if scheme.lower() == "bearer" and token else None
        if found is not None:
            return found
        if guard is None:
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        guard(request)  # the operator token (or a loopback server without one): everything
        return HQ

    @router.get("/at-risk")
    async def at_risk(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        sc = scope(request, authorization)
        return jsonable_encoder(await run_in_threadpool(service.at_risk, sc, min_risk=min_risk, limit=limit))

    @router.get("/lookup")
    async def lookup(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        phone: str | None = None,
        openid: str | None = None,
    ) -> Any:
        sc = scope(request, authorization)
        try:
            cid = await run_in_threadpool(service.find, phone=phone, openid=openid)
            return jsonable_encoder(await run_in_threadpool(service.profile, cid, sc))
        except CustomerNotFound:
            raise HTTPException(404, "no such customer in your scope") from None

    @router.get("/{customer_id}")
    async def show(customer_id: str, request: Request, authorization: Annotated[str | None, Header()] = None) -> Any:
        sc = scope(request, authorization)
        try:
            cid = await run_in_threadpool(service.find, customer_id=customer_id)
            return jsonable_encoder(await run_in_threadpool(service.profile, cid, sc))
        except CustomerNotFound:
            raise HTTPException(404, "no such customer in your scope") from None

    return router


def _operator_guard(raw: Any) -> Callable[[Request], None] | None:
    """The core's operator guard, when the core has one and a config to read it from."""
    if raw is None:
        return None
    try:
        from hub.operator import operator_guard
    except ImportError:  # a core without operator endpoints: the API keys are the only way in
        return None
    guard: Callable[[Request], None] = operator_guard(raw)
    return guard
