"""The one way tests build a hub: ``build_runtime(config, ...)`` and the ``make_runtime`` fixture.

A config is a dict (as in cxhub.yaml), YAML text, or the path of a file; the runtime is migrated
unless asked not to. Each test folder keeps only its own config builder (surveys, pull sources,
push connectors...) and passes the result here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hub.config import load_config
from hub.runtime import Runtime
from hub.sdk.connector import Clock
from hub.store import Store

Config = Mapping[str, Any] | str | Path


def build_runtime(
    config: Config,
    *,
    path: Path | None = None,
    store: Store | str | None = None,
    clock: Clock | None = None,
    transport: httpx.BaseTransport | None = None,
    features: Collection[str] | None = None,
    migrate: bool = True,
) -> Runtime:
    """A Runtime from ``config``. A dict or text is written to ``path`` first when one is given
    (relative paths in it resolve from there); ``store`` (a Store or a URL) replaces the config's."""
    if isinstance(config, Path):
        cfg = load_config(config)
    else:
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config), allow_unicode=True, sort_keys=False)
        if path is None:  # no file: relative paths in the config resolve from the working directory
            cfg = load_config(text=text, path="cxhub-test.yaml")
        else:
            path.write_text(text, encoding="utf-8")
            cfg = load_config(path)
    if store is not None:
        cfg.raw.store.url = store.url if isinstance(store, Store) else store
    kwargs: dict[str, Any] = {"transport": transport, "features": features}
    if clock is not None:
        kwargs["clock"] = clock
    rt = Runtime(cfg, **kwargs)
    if migrate:
        try:
            rt.migrate()
        except BaseException:
            rt.close()
            raise
    return rt


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def make_runtime(tmp_path: Path, clock: Any) -> Iterator[RuntimeFactory]:
    """``make_runtime(config, **build_runtime_options)``: a migrated Runtime on the test's fake clock
    (and, for a dict or text, ``tmp_path/cxhub.yaml``), closed when the test ends."""
    made: list[Runtime] = []

    def make(config: Config, **kwargs: Any) -> Runtime:
        kwargs.setdefault("path", tmp_path / "cxhub.yaml")
        kwargs.setdefault("clock", clock)
        rt = build_runtime(config, **kwargs)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
