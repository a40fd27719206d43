"""Cursor values: plain JSON-able values from driver types, the cursor as stored in the state and
back, and comparing cursors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hub.sdk.columns import bytes_value

_AS_IS = frozenset({type(None), str, int, float, bool, Decimal, datetime, date})


def _plain(value: Any) -> Any:
    """A driver value as something the store can keep as JSON (UUID, memoryview, timedelta...)."""
    if type(value) in _AS_IS:  # the common case, checked by exact type: this runs once per column
        return value
    if isinstance(value, str | int | float | bool | Decimal | datetime | date):
        return value
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes | bytearray):
        return bytes_value(bytes(value))
    if isinstance(value, uuid.UUID | time | timedelta):
        return str(value)
    if isinstance(value, list | tuple):  # PostgreSQL arrays
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # json / jsonb
        return value
    # what a driver gives for other types (addresses, ranges...): its text, which JSON can hold
    return str(value)


def encode_cursor(values: Sequence[Any]) -> list[dict[str, Any]]:
    """Cursor values as JSON state, each tagged with its type so it binds back identically."""
    out: list[dict[str, Any]] = []
    for v in values:
        if isinstance(v, datetime):
            out.append({"t": "datetime", "v": v.isoformat()})
        elif isinstance(v, date):
            out.append({"t": "date", "v": v.isoformat()})
        elif isinstance(v, Decimal):
            out.append({"t": "decimal", "v": str(v)})
        elif isinstance(v, bool | int | float | str) or v is None:
            out.append({"t": "plain", "v": v})
        else:
            out.append({"t": "plain", "v": str(v)})
    return out


def decode_cursor(items: Sequence[Any]) -> list[Any]:
    """The inverse of :func:`encode_cursor`."""
    out: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            out.append(item)
            continue
        t, v = item.get("t"), item.get("v")
        if v is None:
            out.append(None)
            continue
        if t == "datetime":
            out.append(datetime.fromisoformat(v))
        elif t == "date":
            out.append(date.fromisoformat(v))
        elif t == "decimal":
            out.append(Decimal(v))
        else:
            out.append(v)
    return out


def _initial_value(value: Any) -> Any:
    # YAML gives datetimes/dates natively; ISO strings become datetimes too
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _shift_iso_text(value: str, seconds: float) -> str:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value  # not a time: no lookback
    shifted = dt - timedelta(seconds=seconds)
    return shifted.isoformat(sep=" " if " " in value else "T", timespec="microseconds" if "." in value else "seconds")


def _cursor_key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(values)


def _before(a: Sequence[Any], b: Sequence[Any]) -> bool:
    try:
        return _cursor_key(a) < _cursor_key(b)
    except TypeError:  # mixed naive/aware or types changed: trust the database order
        return True
