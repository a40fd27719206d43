"""The questionnaires shipped with cxhub, usable by name (``questionnaire: retail``).

Both the config (a rule may name a preset) and the questionnaire loader (a preset resolves to its
file) need these; they live here so that neither of those modules imports the other for them.
"""

from __future__ import annotations

import re
from pathlib import Path

#: questionnaires shipped with cxhub, usable by name
PRESET_DIR = Path(__file__).resolve().parent / "questionnaires"


def preset_names() -> list[str]:
    """Names of the shipped questionnaire presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_exists(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_-]+", name) is not None and (PRESET_DIR / f"{name}.yaml").is_file()
