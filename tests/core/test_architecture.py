"""The layers hold: `.importlinter` names every module of the hub, and a wrong arrow fails the check."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _contracts() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    return cfg


def _layered_modules() -> set[str]:
    layers = _contracts()["importlinter:contract:layers"]["layers"]
    names: set[str] = set()
    for line in layers.split("\n"):
        names.update(n.strip() for n in line.replace("|", ":").split(":") if n.strip())
    return names


def test_every_module_of_the_hub_sits_in_a_layer() -> None:
    """A new module under hub/ must be placed in the layers, or no contract would look at it."""
    here = {
        f"hub.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "hub").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    missing = here - _layered_modules()
    assert not missing, f"add to the layers contract in .importlinter: {sorted(missing)}"


def test_the_contracts_hold() -> None:
    out = subprocess.run([LINT, "--no-cache", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("path", "line", "broken"),
    [
        ("connectors/jsonl.py", "from hub.runtime import Runtime", "Connectors import only hub.sdk"),
        ("hub/ingest.py", "import typer", "The hub never imports the CLI"),
        ("hub/sdk/durations.py", "from hub.config import Config", "Layers"),
        ("hub/features/feedback/routing.py", "from hub.features.surveys import engine", "Features talk through"),
        ("hub/store/reads.py", "from hub.features.feedback import cases", "Layers"),
    ],
)
def test_a_wrong_arrow_fails_the_check(tmp_path: Path, path: str, line: str, broken: str) -> None:
    """The same check on a copy of the code with one forbidden import added fails, naming the contract."""
    for package in ("hub", "connectors", "commands"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with (tmp_path / path).open("a", encoding="utf-8") as fh:
        fh.write(f"\n{line}  # a deliberate violation\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([LINT, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode != 0, out.stdout
    assert "BROKEN" in out.stdout and broken in out.stdout.split("Broken contracts")[-1], out.stdout
