"""SLA deadlines, optionally counted in business hours.

With business hours (``feedback.business_hours`` or a store's own), a 10-minute target for a review
arriving at 21:55 on a store open 09:00-22:00 is due at 09:05 the next open day: staff are not
paged at night for a clock that runs while the store is closed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.features.feedback.config import DAYS, BusinessHours


def add_business_time(start: datetime, seconds: float, hours: BusinessHours | None, tz: str) -> datetime:
    """``start`` + ``seconds`` of open time (plain wall-clock time when ``hours`` is None)."""
    if hours is None or seconds <= 0:
        return start + timedelta(seconds=seconds)
    zone = ZoneInfo(tz)
    local = start.astimezone(zone)
    left = timedelta(seconds=seconds)
    open_days = {DAYS.index(d) for d in hours.days}
    if not open_days:
        return start + left
    # walk day by day through the opening windows; at most a few weeks for any sane target
    for _ in range(400):
        day = local.date()
        if day.weekday() in open_days:
            w_open = datetime.combine(day, hours.open, zone)
            w_close = datetime.combine(day, hours.close, zone)
            begin = max(local, w_open)
            if begin < w_close:
                if begin + left <= w_close:
                    return (begin + left).astimezone(UTC)
                left -= w_close - begin
        local = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    return start + timedelta(seconds=seconds)  # pragma: no cover - unreachable with open days


def format_left(due: datetime, now: datetime) -> str:
    """``还剩 8 分钟`` / ``已超时 3 分钟`` / ``还剩 2 小时 5 分钟`` (for people, in Chinese)."""
    secs = int((due - now).total_seconds())
    late = secs < 0
    secs = abs(secs)
    if secs >= 86400:
        text = f"{secs // 86400} 天 {secs % 86400 // 3600} 小时"
    elif secs >= 3600:
        text = f"{secs // 3600} 小时 {secs % 3600 // 60} 分钟"
    else:
        text = f"{secs // 60} 分钟" if secs >= 60 else "不到 1 分钟"
    return ("已超时 " if late else "还剩 ") + text
