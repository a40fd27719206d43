"""When an invitation goes out: ``delay`` after the transaction (now if that has passed), moved out
of the store's quiet hours (deferred, never dropped), valid for ``expires`` from then; a
transaction whose invitation would already have expired (a backfill) is too late to ask about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.features.surveys.config import QuietHours, Rule
from hub.model import TouchpointEvent


def in_quiet_hours(local: datetime, quiet: QuietHours) -> bool:
    """Whether a local wall-clock time is inside the quiet period (``start`` inclusive)."""
    t = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= t < quiet.end
    return t >= quiet.start or t < quiet.end  # spans midnight: 21:30-08:30


def defer_quiet_hours(when: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """``when`` (UTC) moved to the end of the quiet period if it falls inside; unchanged otherwise."""
    if quiet is None:
        return when
    local = when.astimezone(zone)
    if not in_quiet_hours(local, quiet):
        return when
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:  # 22:00 in a 21:30-08:30 period ends tomorrow morning
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(UTC)


def due_at(ev: TouchpointEvent, rule: Rule) -> datetime:
    """When ``rule`` wants to ask about ``ev``: ``delay`` after the transaction."""
    return ev.occurred_at + timedelta(seconds=rule.delay)


def too_late(ev: TouchpointEvent, rule: Rule, now: datetime) -> bool:
    """Whether ``occurred_at + delay + expires`` has passed: the invitation would be dead on arrival."""
    return due_at(ev, rule) + timedelta(seconds=rule.expires) <= now


def send_times(
    ev: TouchpointEvent, rule: Rule, now: datetime, zone: ZoneInfo, quiet: QuietHours | None
) -> tuple[datetime, datetime]:
    """``(wanted, send_at)``: when the invitation is due (now if that has passed), and that time
    moved out of the quiet hours of ``zone``."""
    wanted = max(due_at(ev, rule), now)
    return wanted, defer_quiet_hours(wanted, zone, quiet)


def expires_at(send_at: datetime, rule: Rule) -> datetime:
    """When the link of an invitation sent at ``send_at`` stops working."""
    return send_at + timedelta(seconds=rule.expires)


def deferral_detail(wanted: datetime, send_at: datetime, zone: ZoneInfo, quiet: QuietHours) -> str:
    """The ``detail`` of a ``deferred`` invitation: the quiet hours it fell into and the new time."""
    local = wanted.astimezone(zone)
    return (
        f"{local:%H:%M} {zone.key} is inside quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M}; "
        f"deferred to {send_at.astimezone(zone):%Y-%m-%d %H:%M}"
    )


def human_duration(seconds: float) -> str:
    """``7d``, ``12h``, ``30m``, else seconds: how the reasons write delays and cap windows."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
