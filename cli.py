"""The ``cxhub`` command (Typer + rich).

Core commands live here; each installed feature adds its own (outbox, invitations, cases...)
through ``Feature.cli``, a ``"module:function"`` of the CLI layer (``commands/``) that gets the app.
Heavy modules (the store, FastAPI, the sentiment model, platform SDKs) are imported by the
commands that need them, so ``cxhub --help`` and short queries start fast.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from commands import ConfigOpt, JsonOpt, console, dump_json, err, fail, handled, load, runtime, setup_logging
from commands import privacy as privacy_commands
from commands import run as run_commands
from commands import users as users_commands
from commands.display import Display
from commands.display import table as display_table
from hub.errors import ConfigError

app = typer.Typer(
    name="cxhub",
    help="cxhub: customer-experience integration hub (connectors, touchpoints, surveys, case routing).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
map_app = typer.Typer(help="Mappings: test them against their fixtures.", no_args_is_help=True)
app.add_typer(map_app, name="map")

T = TypeVar("T")

__all__ = ["app", "console", "dump_json", "err", "fail", "handled", "load", "main", "runtime"]


# ---------------------------------------------------------------- commands


@app.callback()
def _options(
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Log lines as text or json (one object a line); env CXHUB_LOG_FORMAT.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """cxhub: customer-experience integration hub (connectors, touchpoints, surveys, case routing)."""
    if log_format is not None:
        setup_logging(fmt=log_format)


def _flat_errors(exc: ConfigError) -> list[ConfigError]:
    from hub.errors import ConfigErrors

    if isinstance(exc, ConfigErrors):
        return [e for sub in exc.errors for e in _flat_errors(sub)]
    return [exc]


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Validate the config and every mapping; exit 1 listing every error."""
    from rich.markup import escape

    from hub.config import load_config
    from hub.redact import redact, remember

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        # every error of the run (config, mappings, feature sections), in file and line order
        found = _flat_errors(exc)
        found.sort(key=lambda e: (e.file or "", e.line or 0))
        for e in found:  # an error may quote a value: a URL with its token, a password
            err.print(f"[red]✗[/] {escape(redact(str(e)))}", highlight=False, soft_wrap=True)
        err.print(f"{len(found)} error(s)", highlight=False)
        raise typer.Exit(1) from None
    remember(cfg.secret_values())
    from hub.operator import console_cookie_warning, exposure_warning

    warnings = [*cfg.warnings, *filter(None, [exposure_warning(cfg.raw), console_cookie_warning(cfg.raw)])]
    for w in warnings:  # works, but will surprise someone: said, not failed
        err.print(f"[yellow]![/] {escape(redact(w))}", highlight=False, soft_wrap=True)
    console.print(
        f"[green]✓[/] {cfg.file}: {len(cfg.sources)} source(s), {len(cfg.destinations)} destination(s), "
        f"mappings compiled" + (f", {len(warnings)} warning(s)" if warnings else ""),
        highlight=False,
    )
    # which pull sources ingest as columns, and why the others take the row path
    columnar = {n: s for n, s in cfg.sources.items() if getattr(s.cls, "columnar", False)}
    if columnar:
        from hub.columnar.engine import plan

        for name, spec in columnar.items():
            vector, why = plan(spec.cls, spec.options, spec.mapping, keep_raw=cfg.raw.store.keep_raw_payloads)
            line = "columnar ingest" if vector is not None else f"row path: {why}"
            console.print(f"  {escape(name)}: {escape(line)}", highlight=False)


@app.command("config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the resolved config with every secret masked (each option its connector types as a secret)."""
    import yaml

    cfg = load(config)
    # printed as is: YAML is full of [brackets] that rich would take for markup
    console.print(yaml.safe_dump(cfg.masked(), allow_unicode=True, sort_keys=False), highlight=False, markup=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the touchpoint model."""
    from hub.model import touchpoint_json_schema

    sys.stdout.write(json.dumps(touchpoint_json_schema(), ensure_ascii=False, indent=2) + "\n")


@app.command()
def connectors(as_json: JsonOpt = False) -> None:
    """List installed connectors (entry points ``cxhub.connectors``) and whether each can run."""
    from rich.markup import escape

    from hub.redact import redact
    from hub.registry import discover

    infos = sorted(discover().values(), key=lambda i: i.name)
    if as_json:
        for i in infos:  # a connector that cannot load says why: its error text may quote anything
            title = i.cls.title if i.cls else ""
            print(json.dumps({"name": i.name, "roles": i.roles, "status": redact(i.status), "title": title}))
        return
    table = display_table("connector", "roles", "status", "what")
    for i in infos:
        colour = "green" if i.status == "ok" else "red"
        what = i.cls.title if i.cls else i.target
        table.add_row(i.name, ", ".join(i.roles), f"[{colour}]{escape(redact(i.status))}[/]", what)
    console.print(table)


@app.command()
def events(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (transaction, review...).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Stored touchpoints, newest first (JSON lines with the model's field names with --json)."""
    from hub.store.reads import recent_touchpoints

    with runtime(config, features=()) as rt, rt.store.connect() as conn:
        docs = recent_touchpoints(conn, source=source, kind=kind, limit=limit)
    if as_json:
        from hub.privacy import mask_text

        for d in docs:  # phone numbers inside free text (reviews) are masked for whoever reads this
            print(mask_text(json.dumps(d, ensure_ascii=False)))
        return
    show = Display(rt.config)
    table = display_table(show.column("occurred"), "source", "kind", "customer", "store", "summary")
    for d in docs:
        table.add_row(
            show.when(d["occurred_at"]),
            d["source"],
            d["kind"],
            (d["customer"].get("customer_id") or "")[:8],
            show.store(d["org"].get("store")),
            _summary(d),
        )
    console.print(table)


def _summary(doc: dict[str, Any]) -> str:
    from hub.privacy import mask_text

    parts = []
    order = doc.get("order") or {}
    if order.get("amount") is not None:
        parts.append(f"¥{order['amount']}")
    cats = sorted({i.get("category") for i in order.get("items", []) if i.get("category")})
    if cats:
        parts.append("/".join(cats))
    fb = doc.get("feedback") or {}
    if fb.get("rating") is not None:
        parts.append(f"{fb['rating']}★/{fb.get('rating_scale', 5)}")
    if fb.get("nps") is not None:
        parts.append(f"NPS {fb['nps']}")
    if fb.get("text"):
        parts.append(mask_text(fb["text"])[:40])
    return " ".join(parts)


@app.command("quarantine")
def quarantine_cmd(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include replayed records.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Records that could not be used, with the reason (replay them after a fix); with the ``nats``
    transport, the dead-letter stream's records too (ids ``dl-<n>``)."""
    from hub.store.reads import quarantined

    with runtime(config, features=()) as rt, handled():
        with rt.store.connect() as conn:
            rows: list[dict[str, Any]] = [
                dict(r) for r in quarantined(conn, source=source, include_replayed=all_, limit=limit)
            ]
        if rt.config.raw.transport.kind == "nats":
            from hub.transport.nats import dead_letters

            rows += [dl.as_row() for dl in dead_letters(rt.config.raw.transport, source=source, limit=limit)]
    from hub.privacy import mask_payload

    if as_json:
        for r in rows:  # raw payloads carry personal data: masked on output
            print(dump_json(mask_payload(r)))
        return
    table = display_table("id", "source", "external id", "stage", "status", "reason")
    for r in rows:
        table.add_row(
            str(r["id"]), r["source"], r["external_id"] or "", r["stage"], r["status"], mask_payload(r["reason"])
        )
    console.print(table)
    console.print(f"{len(rows)} record(s)", highlight=False)


@app.command()
def replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Quarantine ids (default: every open one).")] = None,
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    dead_letter: Annotated[
        list[int] | None,
        typer.Option("--dead-letter", help="Dead letter n (id dl-n) of the nats transport; repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-run quarantined records through the current mappings; with the ``nats`` transport, the
    dead-letter stream's records too (all of them when no id is given), deleted once stored."""
    from hub.replay import replay_dead_letters, replay_quarantined

    with runtime(config) as rt, handled():
        result = (
            replay_quarantined(rt.ingestor, rt.mappings, ids=ids or None, source=source) if not dead_letter else None
        )
        if rt.config.raw.transport.kind == "nats" and (dead_letter or not ids):
            more = replay_dead_letters(
                rt.ingestor, rt.mappings, rt.config.raw.transport, seqs=dead_letter or None, source=source
            )
            if result is None:
                result = more
            else:
                result.add(more)
        elif result is None:
            raise fail("--dead-letter: only with transport kind nats")
    if as_json:
        print(json.dumps(result.summary()))
    else:
        s = result.summary()
        console.print(
            f"replayed {s['read']}: stored {s['stored']}, filtered {s['filtered']}, still quarantined {s['quarantined']}"
        )
    if result.quarantined:
        raise typer.Exit(1)


@map_app.command("test")
def map_test(
    path: Annotated[Path | None, typer.Argument(help="A mapping file or a folder (default: mappings/).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run mapping fixtures (``NAME.fixtures.yaml`` beside ``NAME.yaml``); exit 1 on any failure."""
    from hub.mapping.fixtures import run_fixtures

    with handled():
        results = run_fixtures(path)
    failed = [r for r in results if not r.ok]
    for r in results:
        if as_json:
            print(
                json.dumps({"mapping": r.mapping, "case": r.case, "ok": r.ok, "detail": r.detail}, ensure_ascii=False)
            )
        else:
            mark = "[green]✓[/]" if r.ok else "[red]✗[/]"
            console.print(f"{mark} {r.mapping}: {r.case}" + ("" if r.ok else f"\n    {r.detail}"), highlight=False)
    if not as_json:
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed", highlight=False)
    if failed or not results:
        if not results:
            err.print("no fixtures found")
        raise typer.Exit(1)


@app.command()
def sync(
    source: Annotated[str, typer.Argument(help="The pull source to sync.")],
    config: ConfigOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Forget the cursor and read everything again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One pull pass of SOURCE: progress bar, then read / stored / duplicates / quarantined / seconds."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hub.sync import run_sync

    with runtime(config) as rt:
        started = time.monotonic()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),  # the percentage, once the source gave an estimate
            TimeElapsedColumn(),
            TimeRemainingColumn(),  # the ETA, from the rate so far and the estimate
            console=err,
            disable=as_json or not err.is_terminal,
            transient=True,
        ) as progress:
            task = progress.add_task(source, total=None)

            def on_batch(read: int, total: int | None) -> None:
                progress.update(task, completed=read, total=total)

            with handled():
                result = run_sync(rt, source, full=full, on_batch=on_batch)
        summary = {"source": source, **result.summary(), "seconds": round(time.monotonic() - started, 3)}
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(
            f"{source}: read {summary['read']}, stored {summary['stored']}, duplicates {summary['duplicates']}, "
            f"filtered {summary['filtered']}, quarantined {summary['quarantined']} in {summary['seconds']}s",
            highlight=False,
        )


# `cxhub migrate` and `cxhub run` (migration lock, --no-migrate, bounded shutdown): commands/run.py
run_commands.register(app)
# `cxhub users ...` (console accounts and API tokens) and `cxhub privacy ...` (forget, purge)
users_commands.register(app)
privacy_commands.register(app)


@app.command()
def demo(
    config: ConfigOpt = None,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its SQLite file.")] = Path("demo-out"),
) -> None:
    """Run the embedded retail demo end to end through the real pipeline and show what was stored."""
    from commands.demo import run_demo

    os.environ.setdefault("CXHUB_SECRET_KEY", "cxhub-demo-key-not-for-production")
    with handled():
        run_demo(console, config_path=config, workdir=workdir)


@app.command()
def features(as_json: JsonOpt = False) -> None:
    """List installed features (entry points ``cxhub.features``), in install order, and whether each can run."""
    from hub.registry import discover_features

    infos = discover_features()
    if as_json:
        for i in infos:
            f = i.feature
            print(
                json.dumps(
                    {
                        "name": i.name,
                        "status": i.status,
                        "section": f.section if f else None,
                        "requires": list(f.requires) if f else [],
                        "after": list(f.after) if f else [],
                        "title": f.title if f else "",
                    },
                    ensure_ascii=False,
                )
            )
        return
    table = display_table("feature", "section", "after", "status", "what")
    for i in infos:
        f = i.feature
        colour = "green" if i.status == "ok" else "red"
        deps = ", ".join((*f.requires, *f.after)) if f else ""
        table.add_row(
            i.name, (f.section or "") if f else "", deps, f"[{colour}]{i.status}[/]", f.title if f else i.target
        )
    console.print(table)


def _register_features() -> None:
    """Add each runnable feature's commands; a feature whose commands fail to load is reported, not fatal."""
    from hub.registry import installed_features

    for info in installed_features():
        assert info.feature is not None
        target = info.feature.cli
        if not target:
            continue
        module, _, func = target.partition(":")
        try:
            getattr(importlib.import_module(module), func or "register")(app)
        except Exception as exc:  # a broken plug-in must not take the whole command down
            logging.getLogger("cxhub").warning("feature %s: its commands cannot load: %s", info.name, exc)


_register_features()


def main() -> None:
    # Everything imported so far (modules, classes, functions: most of the heap) lives as long as
    # the process: move it out of the cyclic collector's sight, so that a full collection scans
    # only what the work allocates (gc.freeze; the collector stays on for the rest)
    gc.freeze()
    # CXHUB_LOG_LEVEL / CXHUB_LOG_FORMAT; every handler redacts credentials and phone numbers
    setup_logging()
    app()


_F = Callable[..., Any]

if __name__ == "__main__":
    main()
