"""``cxhub outbox`` (list, ``retry``, ``flush``) and ``cxhub send-test DESTINATION``."""

# no "from __future__ import annotations": Typer evaluates the annotations, and ConfigOpt etc. are
# imported inside register() (cli imports this module), so they must be evaluated right there.

import json
from typing import Annotated, Any

import typer


def _short(text: str | None, n: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def register(app: typer.Typer) -> None:
    """Add the outbox commands to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt, console, dump_json, err, fail, handled, runtime

    outbox_app = typer.Typer(
        help="The outbox: every message cxhub sends, with status, attempts and the platform's answer.",
        invoke_without_command=True,
    )
    app.add_typer(outbox_app, name="outbox")

    @outbox_app.callback()
    def outbox_list(
        ctx: typer.Context,
        config: ConfigOpt = None,
        status: Annotated[
            str | None, typer.Option(help="Only this status: pending, sending, sent, failed, dead.")
        ] = None,
        destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
        as_json: JsonOpt = False,
    ) -> None:
        """Outbox rows, newest first (JSON lines with --json). Titles are shown with phones masked."""
        if ctx.invoked_subcommand is not None:
            return
        from hub.outbox import STATUSES, counts, list_rows
        from hub.privacy import mask_text
        from hub.redact import redact

        if status is not None and status not in STATUSES:
            raise fail(f"--status {status!r}: one of {', '.join(STATUSES)}")
        with runtime(config, features=()) as rt, rt.store.connect() as conn:
            rows = list_rows(conn, status=status, destination=destination, limit=limit)
            totals = counts(conn)
        if as_json:
            for r in rows:
                msg = r.get("message") or {}
                if isinstance(msg, str):
                    msg = json.loads(msg)
                r["title"] = mask_text(msg.get("title", ""))
                r.pop("message", None)  # bodies may hold personal data; `title` is masked
                for k in ("receipt", "last_error"):  # rows recorded before redaction existed, too
                    if isinstance(r.get(k), str):
                        r[k] = redact(r[k])
                print(dump_json(r))
            return
        from rich.markup import escape

        from commands.display import Display
        from commands.display import table as display_table

        show = Display(rt.config)
        table = display_table(
            "id", "destination", "status", "tries", show.column("next / sent"), "title", "receipt / last error"
        )
        colours = {"sent": "green", "dead": "red", "failed": "yellow", "sending": "cyan", "pending": "white"}
        for r in rows:
            msg = r.get("message") or {}
            if isinstance(msg, str):
                msg = json.loads(msg)
            when = r["sent_at"] if r["status"] == "sent" else r["next_attempt_at"]
            table.add_row(
                str(r["id"]),
                r["destination"],
                f"[{colours.get(r['status'], 'white')}]{r['status']}[/]",
                str(r["attempts"]),
                show.when(when, seconds=True),
                _short(mask_text(msg.get("title", "")), 40),
                escape(_short(redact((r["receipt"] if r["status"] == "sent" else r["last_error"]) or ""), 70)),
            )
        console.print(table)
        console.print(", ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "empty", highlight=False)

    @outbox_app.command("retry")
    def outbox_retry(
        ids: Annotated[list[int] | None, typer.Argument(help="Outbox row ids to retry.", show_default=False)] = None,
        dead: Annotated[bool, typer.Option("--dead", help="Retry every dead row.")] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Make failed or dead rows due now, with fresh attempts (same idempotency key)."""
        from hub.outbox import retry

        if not ids and not dead:
            raise fail("give row ids or --dead")
        with runtime(config, features=()) as rt, rt.store.begin() as conn:
            n = retry(conn, now=rt.clock(), ids=ids or None, dead=dead)
        console.print(f"{n} row(s) queued again", highlight=False)
        if ids and n < len(ids):
            err.print("rows already sent or sending are left alone (they are not lost)")

    @outbox_app.command("flush")
    def outbox_flush(
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Deliver everything due now, in this process, then exit (cron-style setups, debugging)."""
        from hub.features.delivery import build_worker

        with runtime(config, features=()) as rt, handled():  # the worker alone; no feature hooks run
            total = build_worker(rt).drain()
        summary: dict[str, Any] = {
            k: getattr(total, k) for k in ("claimed", "sent", "failed", "dead", "deferred", "calls", "digests")
        }
        if as_json:
            print(json.dumps(summary))
        else:
            console.print(", ".join(f"{k} {v}" for k, v in summary.items()), highlight=False)

    @app.command("send-test")
    def send_test(
        destination: Annotated[str, typer.Argument(help="A destination name from the config.")],
        to: Annotated[
            list[str] | None, typer.Option(help="Recipient (repeatable), where the platform needs one.")
        ] = None,
        template: Annotated[str | None, typer.Option(help="Template id / code (WeChat, Alipay, SMS).")] = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Send a test message straight to DESTINATION (not through the outbox); show the answer."""
        import uuid

        from rich.markup import escape

        from hub.errors import ConnectorError
        from hub.redact import redact
        from hub.sdk.connector import Button, OutboundMessage

        with runtime(config, features=()) as rt:
            with handled():
                dst = rt.destination(destination)
            now = rt.clock()
            message = OutboundMessage(
                key=f"send-test:{destination}:{uuid.uuid4().hex}",
                title="cxhub test message",
                body=f"This is a test from cxhub at {now:%Y-%m-%d %H:%M:%S} UTC.\n\n这是一条测试消息。",
                to=list(to or []),
                buttons=[Button("cxhub", rt.config.raw.server.public_url)],
                template=template,
                data={"first": "cxhub test", "keyword1": "test", "remark": "test"},
            )
            try:
                receipt = dst.send(message)
            except Exception as exc:  # a connector's own exception too: its text may quote the URL
                kind = type(exc).__name__
                detail = redact(str(exc))
                if as_json:
                    print(json.dumps({"destination": destination, "ok": False, "error": kind, "detail": detail}))
                    raise typer.Exit(1) from None
                if not isinstance(exc, ConnectorError):
                    kind = f"internal error: {kind}"
                raise fail(f"{kind}: {detail}") from None
        if as_json:
            print(
                json.dumps(
                    {
                        "destination": destination,
                        "ok": True,
                        "message_id": receipt.message_id,
                        "detail": redact(receipt.detail or "") or receipt.detail,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            console.print(
                f"[green]✓[/] {destination}: {escape(redact(receipt.detail or ''))}"
                + (f" (message id {receipt.message_id})" if receipt.message_id else ""),
                highlight=False,
            )
