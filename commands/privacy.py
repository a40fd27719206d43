"""``cxhub privacy``: ``forget`` a customer everywhere (the right to be forgotten) and ``purge``
what is older than its retention (``privacy.retention``). See docs/privacy.md."""

# no "from __future__ import annotations": Typer evaluates the annotations, and ConfigOpt etc. are
# imported inside register() (cli imports this module), so they must be evaluated right there.

import sys
from typing import Annotated, Any

import typer

#: who the audit log names for what the command line does
ACTOR = "cli"


def _value(given: str | None, what: str) -> str | None:
    """``-`` reads the value from stdin (one line), so it stays out of the shell's history."""
    if given != "-":
        return given
    line = sys.stdin.readline().strip()
    if not line:
        raise ValueError(f"no {what} on stdin")
    return line


def _counts_table(counts: dict[str, int], title: str) -> Any:
    from commands.display import table

    t = table("table", "what", "rows", title=title)
    for key, n in sorted(counts.items()):
        name, _, action = key.rpartition(".")
        t.add_row(name or key, action.replace("_", " ") if name else "", str(n))
    return t


def register(app: typer.Typer) -> None:
    """Add the ``privacy`` commands to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt, console, dump_json, err, fail, runtime

    privacy_app = typer.Typer(
        help="Personal data: forget a customer everywhere, purge what is older than its retention.",
        no_args_is_help=True,
    )
    app.add_typer(privacy_app, name="privacy")

    @privacy_app.command("forget")
    def forget(
        phone: Annotated[str | None, typer.Option(help="The customer's mobile number (- reads it from stdin).")] = None,
        openid: Annotated[
            str | None,
            typer.Option(help="A platform id: WeChat openid / unionid, Alipay uid... (- reads it from stdin)."),
        ] = None,
        scope: Annotated[str | None, typer.Option(help="The app id the openid belongs to (narrows --openid).")] = None,
        customer: Annotated[str | None, typer.Option(help="The customer id.")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; change nothing.")] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Forget one customer (and every customer merged into them): identities, touchpoints, raw
        payloads, quarantined records, messages, survey answers, cases, scores. What stays has no
        personal data; one audit row (privacy.forget) keeps the counts and a reference to quote."""
        from hub.forget import ForgetError, Lookup, forget_in

        try:
            lookup = Lookup(
                phone=_value(phone, "phone number"), openid=_value(openid, "openid"), scope=scope, customer=customer
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        with runtime(config) as rt:
            if dry_run or not yes:
                try:
                    preview = forget_in(rt, lookup, actor=ACTOR, dry_run=True)
                except ForgetError as exc:
                    raise fail(str(exc)) from None
                if as_json:
                    print(dump_json(preview.as_dict()))
                else:
                    console.print(
                        _counts_table(
                            preview.counts,
                            f"would forget {preview.customers} customer(s) found by {preview.by}",
                        )
                    )
                if dry_run:
                    return
                if not typer.confirm("Forget this customer everywhere? This cannot be undone", default=False):
                    err.print("nothing changed")
                    raise typer.Exit(1)
            try:
                report = forget_in(rt, lookup, actor=ACTOR)
            except ForgetError as exc:
                raise fail(str(exc)) from None
        if as_json:
            print(dump_json(report.as_dict()))
            return
        console.print(
            _counts_table(report.counts, f"forgot {report.customers} customer(s) found by {report.by}"),
        )
        console.print(f"reference: {report.reference} (in the audit log as privacy.forget)", highlight=False)

    @privacy_app.command("purge")
    def purge(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; change nothing.")] = False,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Delete or anonymise what is older than its class's retention (privacy.retention), as the
        hourly privacy-retention job of `cxhub run` does; prints the counts per class."""
        from hub.retention import purge as run_purge

        with runtime(config) as rt:
            report = run_purge(rt, dry_run=dry_run, actor=ACTOR)
        if as_json:
            print(dump_json(report.as_dict()))
            return
        from commands.display import table

        t = table("class", "retention", "table", "what", "rows", title="would purge" if dry_run else "purged")
        for cls, kept in report.retention.items():
            rows = report.counts.get(cls) or {}
            if not rows:
                t.add_row(cls, kept, "", "", "0")
            for key, n in sorted(rows.items()):
                name, _, action = key.rpartition(".")
                t.add_row(cls, kept, name or key, action.replace("_", " ") if name else "", str(n))
        console.print(t)
        for name in report.unfinished:
            console.print(f"{name}: more to purge than privacy.max_batches allows in one run; run it again")
