"""Delivery: the workers that drain the outbox into destinations (a feature of ``cxhub run``).

``install(runtime)`` adds a :class:`~hub.features.delivery.worker.DeliveryService` to ``runtime.services``;
it serves every enabled destination of the config. Tuning comes from the environment
(``CXHUB_DELIVERY_BATCH_SIZE``, ``..._LEASE_SECONDS``, ``..._POLL_SECONDS``, ``..._MAX_ATTEMPTS``).
See docs/delivery.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.features.delivery.worker import DeliveryService, DeliveryWorker
from hub.sdk.policy import RetryPolicy


class DeliverySettings(BaseSettings):
    """Worker tuning (``CXHUB_DELIVERY_`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="CXHUB_DELIVERY_", extra="ignore")

    enabled: bool = True
    batch_size: int = Field(default=50, ge=1, le=1000)
    lease_seconds: float = Field(default=120.0, ge=5)
    poll_seconds: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    backoff_initial_seconds: float = Field(default=5.0, gt=0)
    backoff_max_seconds: float = Field(default=3600.0, gt=0)


def build_worker(runtime: Any, settings: DeliverySettings | None = None, **overrides: Any) -> DeliveryWorker:
    """A worker for ``runtime``'s enabled destinations."""
    s = settings or DeliverySettings()
    names = [n for n, spec in runtime.config.destinations.items() if spec.config.enabled]
    kwargs: dict[str, Any] = {
        "clock": runtime.clock,
        "batch_size": s.batch_size,
        "lease_seconds": s.lease_seconds,
        "policy": RetryPolicy(
            initial=s.backoff_initial_seconds, max_delay=s.backoff_max_seconds, max_attempts=s.max_attempts
        ),
    }
    kwargs.update(overrides)
    return DeliveryWorker(runtime.store, runtime.destination, names, **kwargs)


def install(runtime: Any) -> DeliveryService | None:
    """Add the delivery service to ``cxhub run`` (nothing when ``CXHUB_DELIVERY_ENABLED=false``)."""
    settings = DeliverySettings()
    if not settings.enabled:
        return None
    service = DeliveryService(build_worker(runtime, settings), poll_seconds=settings.poll_seconds)
    runtime.services.append(service)
    return service


__all__ = ["DeliveryService", "DeliverySettings", "DeliveryWorker", "build_worker", "install"]
