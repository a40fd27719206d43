"""Delivery tuning from the environment (``CXHUB_DELIVERY_`` variables); see docs/delivery.md."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeliverySettings(BaseSettings):
    """Worker tuning (``CXHUB_DELIVERY_`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="CXHUB_DELIVERY_", extra="ignore")

    enabled: bool = True
    batch_size: int = Field(default=50, ge=1, le=1000)
    #: how long a claim holds without a heartbeat; a live worker renews it every third of it, so a
    #: dead worker's rows are taken over at most this long after its last heartbeat (docs/delivery.md)
    lease_seconds: float = Field(default=15.0, ge=3)
    poll_seconds: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    backoff_initial_seconds: float = Field(default=5.0, gt=0)
    backoff_max_seconds: float = Field(default=3600.0, gt=0)
