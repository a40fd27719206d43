"""Model versions of one deployment: ``cxhub model train`` writes a candidate, ``cxhub model eval``
compares it with the current model, only a better one is promoted, ``cxhub model rollback`` returns
to the one before.

Layout of ``feedback.sentiment.model_dir``::

    models/
      20261202T101500/        one folder per version (model.json + weights.npz + eval.json)
      20261203T093000/
      promoted.json           {"history": ["20261202T101500", "20261203T093000"]}: the last is in use

Nothing promoted (or no ``model_dir``): the model shipped inside cxhub is used. Old versions are
kept; rollback pops the last promotion.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from hub.features.feedback.textmodel import SHIPPED

_VERSION = re.compile(r"^[0-9A-Za-z._-]{1,64}$")


class VersionError(Exception):
    """A version that does not exist, or nothing to roll back to."""


class ModelVersions:
    """The versions in one ``model_dir``."""

    def __init__(self, root: Path):
        self.root = root

    @property
    def _index(self) -> Path:
        return self.root / "promoted.json"

    def history(self) -> list[str]:
        """Promoted versions, oldest first (the last one is in use)."""
        try:
            doc = json.loads(self._index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise VersionError(f"{self._index}: unreadable ({exc})") from None
        return [v for v in doc.get("history", []) if isinstance(v, str) and _VERSION.match(v)]

    def _write(self, history: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._index.with_suffix(".tmp")
        tmp.write_text(json.dumps({"history": history}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self._index)  # atomic: a process reading it sees the old or the new list

    def versions(self) -> list[str]:
        """Every version folder, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "model.json").is_file())

    def folder(self, version: str) -> Path:
        if not _VERSION.match(version) or not (self.root / version / "model.json").is_file():
            raise VersionError(f"no model version {version!r} in {self.root}; versions: {self.versions()}")
        return self.root / version

    def current(self) -> str | None:
        """The version in use (None: the shipped model)."""
        history = self.history()
        return history[-1] if history else None

    def current_folder(self) -> Path:
        """The folder of the model in use: the last promoted version, else the shipped model."""
        version = self.current()
        return self.folder(version) if version else SHIPPED

    def new_folder(self, version: str) -> Path:
        if not _VERSION.match(version) or (self.root / version).exists():
            raise VersionError(f"cannot create model version {version!r} in {self.root}")
        path = self.root / version
        path.mkdir(parents=True)
        return path

    def promote(self, version: str) -> None:
        self.folder(version)
        history = [v for v in self.history() if v != version] + [version]
        self._write(history)

    def rollback(self) -> str | None:
        """Return to the version promoted before the current one (None: the shipped model)."""
        history = self.history()
        if not history:
            raise VersionError(f"nothing to roll back in {self.root}: the shipped model is in use")
        history.pop()
        self._write(history)
        return history[-1] if history else None


def model_folder(model_dir: str | None, config_dir: Path | None) -> Path:
    """The model folder the ``model`` engine loads for a config."""
    if not model_dir:
        return SHIPPED
    root = Path(model_dir)
    if not root.is_absolute() and config_dir is not None:
        root = config_dir / root
    return ModelVersions(root).current_folder()
