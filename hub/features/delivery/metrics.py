"""Delivery metrics, registered in prometheus-client's default registry (so ``GET /metrics`` of
``cxhub run`` shows them next to the web metrics).

Counters count outbox rows (a digest of 12 messages that was sent counts 12 sent), after their
outcome is recorded, so they agree with ``cxhub outbox``:

- ``cxhub_delivery_messages_total{destination, outcome}``: ``sent``, ``failed`` (this attempt
  failed and the row waits for a retry: errors, timeouts, throttle answers), ``dead``.
- ``cxhub_delivery_retries_total{destination}``: sends of rows that had been tried before (after
  a failure, or after a worker died mid-send).
- ``cxhub_delivery_send_seconds{destination}``: histogram of platform call times (every call,
  whatever its answer).

Gauges are read from the store by the worker loop every ``refresh_seconds`` (one ``GROUP BY``
over the rows that are not final), so they describe the whole outbox, shared by every process:

- ``cxhub_delivery_backlog{destination}``: rows not yet final (pending, failed, sending).
- ``cxhub_delivery_oldest_pending_age_seconds{destination}``: age of the oldest of them (0 when
  there are none): the figure to alert on when a platform is down or a destination disabled.

With several ``cxhub run`` processes every process reports the same gauges: aggregate them with
``max``, the counters with ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Connection

from hub.outbox.admin import backlog

MESSAGES = Counter(
    "cxhub_delivery_messages_total",
    "Outbox messages by destination and recorded outcome (sent / failed / dead)",
    ["destination", "outcome"],
)
RETRIES = Counter(
    "cxhub_delivery_retries_total",
    "Sends of outbox messages that had been tried before, by destination",
    ["destination"],
)
SEND_SECONDS = Histogram(
    "cxhub_delivery_send_seconds",
    "Platform call time per send (a digest is one call), by destination",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BACKLOG = Gauge(
    "cxhub_delivery_backlog",
    "Outbox messages not yet final (pending, failed, sending), by destination",
    ["destination"],
)
OLDEST_AGE = Gauge(
    "cxhub_delivery_oldest_pending_age_seconds",
    "Age of the oldest outbox message not yet final, by destination (0 when none)",
    ["destination"],
)


def count_outcomes(destination: str, outcome: str, rows: int) -> None:
    """Add ``rows`` recorded with ``outcome`` for ``destination``."""
    if rows:
        MESSAGES.labels(destination, outcome).inc(rows)


def refresh_backlog(conn: Connection, now: datetime, destinations: Iterable[str] = ()) -> dict[str, tuple[int, float]]:
    """Set the backlog gauges from the store; ``destinations`` are reported even when empty.

    Returns ``{destination: (backlog, oldest age in seconds)}``.
    """
    # destinations reported before and empty now go back to 0 rather than keep a stale value
    found: dict[str, tuple[int, float]] = {name: (0, 0.0) for name in (*destinations, *_reported)}
    for name, n, oldest in backlog(conn):
        found[name] = (n, max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
    for name, (n, age) in found.items():
        BACKLOG.labels(name).set(n)
        OLDEST_AGE.labels(name).set(age)
        _reported.add(name)
    return found


_reported: set[str] = set()


__all__ = [
    "BACKLOG",
    "MESSAGES",
    "OLDEST_AGE",
    "RETRIES",
    "SEND_SECONDS",
    "count_outcomes",
    "refresh_backlog",
]
