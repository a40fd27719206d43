"""Console pages: connectors, the outbox and the quarantine: state, lag, errors, replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp


def router(app: ConsoleApp) -> APIRouter:
    return APIRouter(prefix="/console", include_in_schema=False)
