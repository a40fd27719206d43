"""Durations as people write them in YAML: ``30s``, ``5m``, ``2h``, ``1d``, ``1w``, ``250ms``, or a
number of seconds. One parser for the whole config (core, features and connector options)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``"5m"`` -> 300.0 seconds; numbers are seconds. ``ValueError`` names the value and the format."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value!r}: a duration cannot be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 2h, 1d, 1w)")
    return float(m.group(1)) * _UNITS[m.group(2)]


#: a pydantic field type: ``timeout: Duration = 30`` accepts ``"30s"``, ``"5m"`` or seconds
Duration = Annotated[float, BeforeValidator(parse_duration)]
