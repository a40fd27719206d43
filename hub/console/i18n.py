"""The console's message catalogue: Chinese first, English second, one YAML file per locale.

The core's messages live in ``hub/console/messages/<locale>.yaml``; a feature adds its own folder
with :meth:`hub.console.Console.add_messages` (keys prefixed by the feature's name). A key missing
in a locale falls back to Chinese, then to the key itself, so a page never breaks on a missing
translation (``tests/console`` checks that both catalogues have the same keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"


class Catalogue:
    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {loc: {} for loc in LOCALES}

    def add_folder(self, folder: Path) -> None:
        """Load ``<locale>.yaml`` and every ``<part>.<locale>.yaml`` of ``folder``."""
        for loc in LOCALES:
            for path in sorted(folder.glob(f"*{loc}.yaml")):
                if path.name != f"{loc}.yaml" and not path.name.endswith(f".{loc}.yaml"):
                    continue
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                if not isinstance(data, dict):
                    raise ValueError(f"{path}: a catalogue is a mapping of key -> text")
                self.messages[loc].update(_flatten(data))

    def t(self, locale: str, key: str, **values: Any) -> str:
        text = self.messages.get(locale, {}).get(key) or self.messages[DEFAULT_LOCALE].get(key) or key
        if values:
            try:
                return text.format(**values)
            except (KeyError, IndexError, ValueError):
                return text
        return text


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def pick_locale(requested: str | None, user: str | None, default: str) -> str:
    for loc in (requested, user, default):
        if loc in LOCALES:
            return loc
    return DEFAULT_LOCALE
