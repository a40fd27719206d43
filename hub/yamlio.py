"""YAML loading that remembers where every key came from, so errors can name ``file:line``.

``load_yaml`` returns the plain data (dicts, lists, scalars) and a ``Lines`` index from key path
(a tuple of keys and list indexes) to the 1-based line of that node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.errors import ConfigError

KeyPath = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Lines:
    """Where each key path of a YAML document stands."""

    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def sub(self, prefix: Sequence[str | int]) -> Lines:
        """The index of the subtree below ``prefix``, with paths relative to it."""
        n = len(prefix)
        pre = tuple(prefix)
        return Lines(self.file, {k[n:]: v for k, v in self.lines.items() if k[:n] == pre})

    def error(self, path: Sequence[str | int], message: str, cls: type[ConfigError] = ConfigError) -> ConfigError:
        """A ``ConfigError`` located at ``path``."""
        return cls(message, file=self.file, line=self.line(path), key=dotted(path) or None)


def dotted(path: Iterable[str | int]) -> str:
    """``("sources", "pos", "options", 0)`` -> ``sources.pos.options[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# libyaml's parser where PyYAML was built with it (the wheels are): the same nodes, marks and errors
# as the pure-Python one, several times faster (config and mappings load on every command)
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(
                    f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1, key=dotted(path)
                )
            seen.add(key)
            _walk(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, file)


def interpolate(value: Any, lines: Lines, path: KeyPath = (), env: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; a missing variable is an error."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: interpolate(v, lines, (*path, k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, lines, (*path, i), env) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise lines.error(path, f"environment variable {name} is not set")

        return _ENV.sub(repl, value)
    return value


def load_yaml_text(text: str, file: str = "<string>") -> tuple[Any, Lines]:
    """Parse YAML text; returns ``(data, lines)``. Errors name ``file:line``."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, Lines(file)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from exc
    lines: dict[KeyPath, int] = {}
    _walk(node, (), lines, file)
    return data, Lines(file, lines)


def load_yaml(path: str | Path) -> tuple[Any, Lines]:
    """Read and parse a YAML file; a missing or non-UTF-8 file is a ``ConfigError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("file not found", file=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(p)) from exc
    return load_yaml_text(text, str(p))
