"""Mapping fixtures: ``NAME.fixtures.yaml`` beside ``NAME.yaml``, run by ``cxhub map test`` and pytest.

A fixture file is a list of cases::

    - case: paid order with fresh food and dairy
      input: {...raw payload...}
      expected: {...}          # a subset of the touchpoint (model field names, JSON values)
    - case: amount is not a number
      input: {...}
      error: order.amount      # the record must be rejected; the reason contains this text
    - case: unpaid orders are skipped
      input: {...}
      skipped: true
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import ConfigError, PayloadError
from hub.mapping.load import PRESET_DIR, fixtures_path_for, load_mapping_file
from hub.mapping.targets import known_namespaces
from hub.yamlio import load_yaml


@dataclass
class FixtureResult:
    mapping: str
    case: str
    ok: bool
    detail: str = ""


def subset_diff(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where ``expected`` is not contained in ``actual`` (dicts compared by subset, lists fully)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path or 'event'}: expected a mapping, got {actual!r}"
        for k, v in expected.items():
            if k not in actual:
                return f"{path}{k}: missing"
            d = subset_diff(v, actual[k], f"{path}{k}.")
            if d:
                return d
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return f"{path.rstrip('.')}: expected {expected!r}, got {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            d = subset_diff(e, a, f"{path.rstrip('.')}[{i}].")
            if d:
                return d
        return None
    if expected != actual and str(expected) != str(actual):
        return f"{path.rstrip('.')}: expected {expected!r}, got {actual!r}"
    return None


def run_mapping_fixtures(mapping_path: Path) -> list[FixtureResult]:
    """Run the fixtures beside one mapping file. A preset may use only the built-in identity
    namespaces (no config declares any for it); elsewhere the config that uses the mapping does."""
    preset = mapping_path.resolve().parent == PRESET_DIR
    mapping = load_mapping_file(mapping_path, namespaces=known_namespaces() if preset else None)
    fx_path = fixtures_path_for(mapping_path)
    if not fx_path.exists():
        return [FixtureResult(mapping.name, "(fixtures)", False, f"no fixtures file {fx_path.name} beside it")]
    cases, lines = load_yaml(fx_path)
    if not isinstance(cases, list):
        raise ConfigError("a fixtures file is a list of cases", file=str(fx_path), line=1)
    out = []
    for i, case in enumerate(cases):
        name = str(case.get("case", f"case {i + 1}"))
        where = f"{fx_path.name}:{lines.line((i,))}"
        m = mapping
        if "options" in case:  # the source's connector options, for `scope: {option: ...}`
            m = load_mapping_file(mapping_path, namespaces=known_namespaces() if preset else None)
            try:
                m.bind_options(case["options"] or {})
            except ConfigError as exc:
                out.append(FixtureResult(mapping.name, name, False, f"{where}: {exc}"))
                continue
        try:
            ev = m.apply(
                case.get("input"),
                source=str(case.get("source", "fixture")),
                external_id=str(case.get("external_id", f"fx-{i}")),
            )
        except PayloadError as exc:
            if "error" in case and str(case["error"]) in str(exc):
                out.append(FixtureResult(mapping.name, name, True))
            else:
                out.append(FixtureResult(mapping.name, name, False, f"{where}: rejected: {exc}"))
            continue
        if "error" in case:
            out.append(FixtureResult(mapping.name, name, False, f"{where}: expected an error about {case['error']!r}"))
        elif case.get("skipped"):
            ok = ev is None
            out.append(FixtureResult(mapping.name, name, ok, "" if ok else f"{where}: expected `when` to skip it"))
        elif ev is None:
            out.append(FixtureResult(mapping.name, name, False, f"{where}: skipped by `when`"))
        else:
            diff = subset_diff(case.get("expected", {}), ev.model_dump(mode="json"))
            out.append(FixtureResult(mapping.name, name, diff is None, f"{where}: {diff}" if diff else ""))
    return out


def run_fixtures(path: Path | None = None) -> list[FixtureResult]:
    """Run every mapping's fixtures under ``path`` (a file or folder; default: the presets)."""
    target = path or PRESET_DIR
    if target.is_file():
        return run_mapping_fixtures(target)
    results: list[FixtureResult] = []
    for p in sorted(target.rglob("*.yaml")):
        if p.name.endswith(".fixtures.yaml"):
            continue
        # every preset must ship fixtures; elsewhere a YAML without fixtures may be a config file
        if fixtures_path_for(p).exists() or target == PRESET_DIR:
            results.extend(run_mapping_fixtures(p))
    return results
