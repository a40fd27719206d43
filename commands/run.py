"""``cxhub migrate`` and ``cxhub run``: bringing the store's schema up to date under the migration
lock, and running the hub until SIGTERM.

Any number of processes may start at the same moment on one store: ``cxhub run`` migrates under
the same lock as ``cxhub migrate`` (one process upgrades, the others wait and find it done), or,
with ``--no-migrate``, never touches the schema and waits (bounded) until it is current.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from commands import ConfigOpt, console, err, fail, handled, runtime

WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for the migration lock (another process migrating) or, with --no-migrate, "
        "for the schema to become current.",
    ),
]


def _waiting_for_lock(holder: str) -> None:
    err.print(f"waiting for the migration lock, held by {holder} ...", highlight=False)


def migrate(config: ConfigOpt = None, wait: WaitOpt = 600.0) -> None:
    """Bring the store's schema up to date (every installed feature's migrations), under a lock:
    safe to run from several processes at once."""
    with runtime(config, migrate=False) as rt, handled():
        before = rt.store.schema_status()
        rt.store.migrate(timeout=wait, waiting=_waiting_for_lock)
        after = rt.store.schema_status()
    if before == "current":
        console.print("the schema is current; nothing to do", highlight=False)
    else:
        console.print(f"migrated: {before} -> {after}", highlight=False)


def run(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config).")] = None,
    no_migrate: Annotated[
        bool,
        typer.Option(
            "--no-migrate",
            help="Do not migrate: wait (--wait seconds) until `cxhub migrate` has made the schema current.",
        ),
    ] = False,
    wait: WaitOpt = 600.0,
    shutdown_seconds: Annotated[
        float,
        typer.Option(
            "--shutdown-seconds",
            min=1,
            envvar="CXHUB_SHUTDOWN_SECONDS",
            help="How long stopping (SIGTERM) may take: requests, syncs and sends in flight finish "
            "or are put back; past it the process exits anyway.",
        ),
    ] = 20.0,
    role: Annotated[
        str,
        typer.Option(
            help="receiver: the HTTP side only (verify pushes, hand them to the transport); worker: ingest "
            "from the transport, scheduler, delivery (HTTP for health and metrics); all: both.",
        ),
    ] = "all",
) -> None:
    """Webhook server + scheduler + delivery workers, until SIGTERM / Ctrl-C."""
    from hub.runner import serve
    from hub.transport import ROLES

    if role not in ROLES:
        raise fail(f"--role {role!r}: one of {', '.join(ROLES)}", code=2)

    with runtime(config, migrate=False) as rt, handled():
        if no_migrate:
            rt.store.wait_until_current(
                wait,
                waiting=lambda status: err.print(
                    f"waiting up to {wait:g}s for the schema to become current ({status}); run `cxhub migrate`",
                    highlight=False,
                ),
            )
        else:
            rt.store.migrate(timeout=wait, waiting=_waiting_for_lock)
        clean = serve(rt, host=host, port=port, shutdown_seconds=shutdown_seconds, role=role)
    if not clean:
        # a job or a send did not finish in time: their threads would keep the interpreter from
        # exiting; what they hold goes to another process when its lease ends
        err.print(f"stopped after {shutdown_seconds:g}s with work still in flight", highlight=False)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def register(app: typer.Typer) -> None:
    """Add ``migrate`` and ``run`` to the ``cxhub`` app."""
    app.command("migrate")(migrate)
    app.command("run")(run)


__all__ = ["migrate", "register", "run"]
