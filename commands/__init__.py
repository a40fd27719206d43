"""The CLI layer's shared pieces: the consoles, options, error handling and the runtime of one command.

``cli.py`` builds the ``cxhub`` app from the core commands and from every installed feature's
commands (``Feature.cli``, a ``"module:function"`` of this layer). Only this layer prints for
people; the hub below returns data.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
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
    """Print ``error: message`` on stderr (credentials redacted); raise the returned ``typer.Exit``."""
    from rich.markup import escape

    from hub.redact import redact

    err.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """Turn cxhub errors into a clear message and exit code 1, never a traceback."""
    try:
        yield
    except CxhubError as exc:
        raise fail(str(exc)) from None


def load(config: Path | None) -> Config:
    """The validated config, or a clear error and exit code 1. Its secret values are remembered
    for redaction, so that no output of the command (errors, logs, receipts) shows one."""
    from hub.config import load_config
    from hub.redact import remember

    with handled():
        cfg = load_config(config)
    remember(cfg.secret_values())
    return cfg


#: what ``CXHUB_LOG_FORMAT`` / ``--log-format`` accept
LOG_FORMATS = ("text", "json")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Log to stderr at ``level`` (env ``CXHUB_LOG_LEVEL``, default WARNING) as ``fmt`` (``text``
    or ``json``, env ``CXHUB_LOG_FORMAT``). Every handler on the root logger redacts credentials
    (and masks phone numbers): libraries log whole URLs (httpx at INFO), and platforms put
    tokens in them. Called again (``--log-format``), it reconfigures the same handler."""
    from hub.privacy import mask_text
    from hub.redact import install

    level = (level or os.environ.get("CXHUB_LOG_LEVEL") or "WARNING").upper()
    fmt = (fmt or os.environ.get("CXHUB_LOG_FORMAT") or "text").lower()
    if fmt not in LOG_FORMATS:
        raise fail(f"log format {fmt!r}: one of {', '.join(LOG_FORMATS)}", code=2)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    try:
        root.setLevel(level)
    except ValueError:
        raise fail(f"CXHUB_LOG_LEVEL {level!r}: one of DEBUG, INFO, WARNING, ERROR", code=2) from None
    for handler in root.handlers:
        handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
        install(handler, also=mask_text)


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
