"""How the CLI shows times, stores and tables to people.

- **Times** in the configured zone (``timezone:`` at the top of the config, ``Asia/Shanghai`` by
  default): the same clock the staff cards and survey texts use. The store keeps UTC; ``--json``
  output keeps ISO 8601 with its offset.
- **Stores** by the name people know them by (``徐汇店``), from the features' config sections
  (``Feature.store_names``); an id with no name stays as it is.
- **Tables** that fold a long cell onto the next line instead of cutting it with "…": an
  operator on an 80-column terminal still reads the whole id, reason or error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from rich import box
from rich.table import Table

if TYPE_CHECKING:
    from hub.config import Config


def table(*columns: str, title: str | None = None) -> Table:
    """A table whose cells fold instead of ending in "…" when the terminal is narrow."""
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    for name in columns:
        t.add_column(name, overflow="fold")
    return t


class Display:
    """Times and store names of one config, for people to read."""

    def __init__(self, cfg: Config, stores: Mapping[str, str] | None = None):
        self.zone = ZoneInfo(cfg.raw.timezone)
        self.zone_name = cfg.raw.timezone
        self._cfg = cfg
        self._stores = dict(stores) if stores is not None else None

    @cached_property
    def store_names(self) -> dict[str, str]:
        if self._stores is not None:
            return self._stores
        from hub.registry import installed_features

        names: dict[str, str] = {}
        for info in installed_features():
            feature = info.feature
            if feature is None or feature.section is None:
                continue
            section = self._cfg.section(feature.section)
            if section is not None:
                for sid, name in feature.store_names(section).items():
                    names.setdefault(sid, name)
        return names

    def store(self, store_id: str | None) -> str:
        """``徐汇店`` for ``S001`` when the config names it; the id otherwise."""
        if not store_id:
            return ""
        return self.store_names.get(store_id, store_id)

    def when(self, value: datetime | str | None, *, seconds: bool = False) -> str:
        """``2026-12-02 18:03`` in the configured zone (a naive time is UTC, as the store keeps it)."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            try:
                at = datetime.fromisoformat(value)
            except ValueError:
                return value
        else:
            at = value
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    def column(self, what: str) -> str:
        """A time column's heading with its zone: ``occurred (Asia/Shanghai)``."""
        return f"{what} ({self.zone_name})"
