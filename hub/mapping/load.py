"""Loading mappings: files, YAML text, the presets shipped in ``mappings/``, references from a config."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from hub.errors import did_you_mean
from hub.mapping.apply import CompiledMapping
from hub.mapping.compile import compile_mapping
from hub.yamlio import load_yaml, load_yaml_text

PRESET_DIR = Path(__file__).resolve().parents[2] / "mappings"


def load_mapping_file(path: str | Path, *, namespaces: Collection[str] | None = None) -> CompiledMapping:
    """Load and compile one mapping file (``namespaces``: see ``compile_mapping``)."""
    data, lines = load_yaml(path)
    m = compile_mapping(data, lines, namespaces=namespaces)
    fx = fixtures_path_for(Path(path))
    m.fixtures_path = fx if fx.exists() else None
    return m


def load_mapping_text(
    text: str, file: str = "<string>", *, namespaces: Collection[str] | None = None
) -> CompiledMapping:
    """Compile a mapping from YAML text (tests, inline config)."""
    data, lines = load_yaml_text(text, file)
    return compile_mapping(data, lines, namespaces=namespaces)


def fixtures_path_for(mapping_path: Path) -> Path:
    """``pos_order.yaml`` -> ``pos_order.fixtures.yaml`` beside it."""
    return mapping_path.with_name(mapping_path.stem + ".fixtures.yaml")


def preset_path(name: str) -> Path | None:
    """Path of the preset mapping ``name`` in ``mappings/``, or None."""
    p = PRESET_DIR / f"{name}.yaml"
    return p if p.is_file() else None


def resolve_mapping_ref(ref: str, base_dir: Path) -> Path:
    """A mapping reference is a preset name (``pos_order``) or a path relative to the config file."""
    if "/" not in ref and not ref.endswith((".yaml", ".yml")):
        p = preset_path(ref)
        if p is None:
            presets = sorted(f.stem for f in PRESET_DIR.glob("*.yaml") if not f.stem.endswith(".fixtures"))
            raise FileNotFoundError(f"no preset mapping {ref!r}; presets: {presets}{did_you_mean(ref, presets)}")
        return p
    p = (base_dir / ref).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"mapping file {ref!r} not found (looked at {p})")
    return p


def list_presets() -> list[Path]:
    """Every preset mapping file in ``mappings/``."""
    return sorted(p for p in PRESET_DIR.glob("*.yaml") if not p.name.endswith(".fixtures.yaml"))
