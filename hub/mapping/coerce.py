"""Coercions: a raw value (JSON, form text, a database driver's value) -> the type a field declares.

``coercer(kind, tz, fmt)`` chooses the function once, when a mapping compiles; ``coerce`` is the
same for one value. Each raises ``ValueError`` with a reason a person understands: the mapping
turns it into a ``RecordError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

_TRUE = {"1", "true", "t", "yes", "y", "是", "on"}
_FALSE = {"0", "false", "f", "no", "n", "否", "off", ""}


def time_zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def coerce(value: Any, kind: str, *, tz: ZoneInfo, fmt: str | None = None) -> Any:
    """Coerce a raw value to ``kind``; raises ``ValueError`` with a reason a person understands."""
    return coercer(kind, tz, fmt)(value)


def coercer(kind: str, tz: ZoneInfo, fmt: str | None = None) -> Callable[[Any], Any]:
    """The coercion function for ``kind`` (what ``coerce`` does, chosen once: mappings call it per value)."""
    if kind == "datetime":
        return _datetime_coercer(tz, fmt)
    if kind == "date":
        return _date_coercer(fmt)
    try:
        return _COERCERS[kind]
    except KeyError:
        raise ValueError(f"unknown type {kind!r}") from None  # compile() rules this out


def _to_str(value: Any) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, dict | list):
        raise ValueError(f"expected text, got {type(value).__name__}")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _to_decimal(value: Any) -> Decimal:
    if type(value) is str:
        text = value
    elif type(value) is int and value.bit_length() < 2000:
        # what Decimal(str(value)) gives, without the text; up to 600 digits, as str() refuses
        # ints longer than sys.get_int_max_str_digits() (4,300 by default, 640 at the least)
        return Decimal(value)
    elif isinstance(value, bool | dict | list):
        raise ValueError(f"expected a number, got {value!r}")
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return value
    else:
        text = str(value)
    try:
        d = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return d


def _to_float(value: Any) -> float:
    return float(_to_decimal(value))


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an integer") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(f"{value!r} is not an integer")
    return int(d)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def as_is(value: Any) -> Any:
    return value


_COERCERS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "decimal": _to_decimal,
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "json": as_is,
}


def _date_coercer(fmt: str | None) -> Callable[[Any], date]:
    def to_date(value: Any) -> date:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return datetime.strptime(str(value), fmt).date() if fmt else date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a date") from None

    return to_date


def _datetime_coercer(tz: ZoneInfo, fmt: str | None) -> Callable[[Any], datetime]:
    if fmt is not None:

        def to_datetime_in_format(value: Any) -> datetime:
            return _to_datetime(value, tz, fmt)

        return to_datetime_in_format

    fromisoformat = datetime.fromisoformat
    utcoffset = tz.utcoffset

    def to_datetime(value: Any) -> datetime:
        # the common cases first, exactly as _to_datetime treats them: ISO text, a driver's datetime
        cls = type(value)
        if cls is str:
            try:
                dt = fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not a date-time") from None
        elif cls is datetime:
            dt = value
        else:
            return _to_datetime(value, tz, None)
        if dt.tzinfo is None:
            offset = utcoffset(dt)
            if offset is not None:  # always, for a ZoneInfo
                # dt.replace(tzinfo=tz).astimezone(UTC) by hand: replace() alone costs 3x this
                u = dt - offset
                return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, UTC)
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(UTC)

    return to_datetime


def _to_datetime(value: Any, tz: ZoneInfo, fmt: str | None) -> datetime:
    if fmt in ("epoch", "epoch_ms") or (fmt is None and isinstance(value, int | float | Decimal)):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a timestamp")
        try:
            n = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a timestamp") from None
        if fmt == "epoch_ms":
            n = n / 1000
        try:
            return datetime.fromtimestamp(float(n), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{value!r} is out of range for a timestamp") from None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time())
    else:
        text = str(value).strip()
        try:
            dt = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a date-time" + (f" in format {fmt!r}" if fmt else "")) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)
