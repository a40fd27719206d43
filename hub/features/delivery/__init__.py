"""Delivery: the workers that drain the outbox into destinations (a feature of ``cxhub run``).

The feature adds a :class:`~hub.features.delivery.worker.DeliveryService` to ``runtime.services``;
it serves every enabled destination of the config. Its public interface,
``runtime.features["delivery"]``, is that service (None when delivery is turned off). Tuning comes from the environment
(``CXHUB_DELIVERY_BATCH_SIZE``, ``..._LEASE_SECONDS``, ``..._POLL_SECONDS``, ``..._MAX_ATTEMPTS``).
See docs/delivery.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.feature import Feature

if TYPE_CHECKING:
    from hub.features.delivery.settings import DeliverySettings
    from hub.features.delivery.worker import DeliveryService, DeliveryWorker


def build_worker(runtime: Any, settings: DeliverySettings | None = None, **overrides: Any) -> DeliveryWorker:
    """A worker for ``runtime``'s enabled destinations."""
    from hub.features.delivery.settings import DeliverySettings
    from hub.features.delivery.worker import DeliveryWorker
    from hub.sdk.policy import RetryPolicy

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
    worker = DeliveryWorker(runtime.store, runtime.destination, names, **kwargs)
    # send-time checks: features publish them as ``send_check`` on their interface (hub.outbox.checks);
    # read at send time, so a feature installed after this one is seen too
    features = getattr(runtime, "features", {})
    worker.sender.checks = lambda: [c for f in features.values() if (c := getattr(f, "send_check", None)) is not None]
    return worker


class Delivery(Feature):
    """The delivery plug-in: outbox workers for every enabled destination. The outbox and its
    delivery tables belong to the core (``hub.outbox``): every feature writes to the outbox."""

    name = "delivery"
    title = "delivery of the outbox to destinations: retries, rate limits, digests, dead letters"
    cli = "commands.outbox:register"

    def install(self, runtime: Any) -> DeliveryService | None:
        """Add the delivery service to ``cxhub run`` (nothing when ``CXHUB_DELIVERY_ENABLED=false``)."""
        from hub.features.delivery.settings import DeliverySettings
        from hub.features.delivery.worker import DeliveryService

        settings = DeliverySettings()
        if not settings.enabled:
            return None
        service = DeliveryService(build_worker(runtime, settings), poll_seconds=settings.poll_seconds)
        runtime.services.append(service)
        return service


feature = Delivery()


def install(runtime: Any) -> DeliveryService | None:
    """Install the feature on ``runtime`` by hand (tests and tools that build a runtime piecemeal)."""
    return feature.install(runtime)


def __getattr__(name: str) -> Any:
    # the worker's classes and the settings load on first use: the cxhub command imports this module
    # on every start
    if name in ("DeliveryService", "DeliveryWorker"):
        from hub.features.delivery import worker

        return getattr(worker, name)
    if name == "DeliverySettings":
        from hub.features.delivery.settings import DeliverySettings

        return DeliverySettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Delivery", "DeliveryService", "DeliverySettings", "DeliveryWorker", "build_worker", "feature", "install"]
