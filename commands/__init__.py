"""The CLI layer's shared pieces: the consoles, options, error handling and the runtime of one command.

``cli.py`` builds the ``cxhub`` app from the core commands and from every installed feature's
commands (``Feature.cli``, a ``"module:function"`` of this layer). Only this layer prints for
people; the hub below returns data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from hub.errors import CxhubError

if TYPE_CHECKING:
    from hub.config import Config
    from hub.runtime import Runtime

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (env CXHUB_CONFIG, default ./cxhub.yaml).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON lines for scripts.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned ``typer.Exit``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn cxhub errors into a clear message and exit code 1, never a traceback."""
    try:
        yield
    except CxhubError as exc:
        raise fail(str(exc)) from None


def load(config: Path | None) -> Config:
    """The validated config, or a clear error and exit code 1."""
    from hub.config import load_config

    with handled():
        return load_config(config)


@contextmanager
def runtime(config: Path | None, *, migrate: bool = True, features: Collection[str] | None = None) -> Iterator[Runtime]:
    """A Runtime for one command; the schema is migrated first. ``features``: only these features
    are installed (a command that only reads the store passes ``()`` and starts faster)."""
    from hub.runtime import Runtime

    cfg = load(config)
    with handled():
        rt = Runtime(cfg, features=features)
        try:
            if migrate:
                rt.migrate()
            yield rt
        finally:
            rt.close()


def feature_interface(rt: Runtime, name: str) -> Any:
    """``rt.features[name]``, or a clear error when that feature is not installed or turned off."""
    found = rt.features.get(name)
    if found is None:
        raise fail(f"the {name} feature is not installed or turned off (see `cxhub features`)")
    return found


def dump_json(data: Any) -> str:
    """JSON text of rows holding datetimes and decimals (the store's encoder)."""
    from hub.store import dumps

    return dumps(data)
