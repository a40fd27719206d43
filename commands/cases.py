"""``cxhub cases`` and ``cxhub case show|ack|resolve|close|reopen ID`` (the feedback feature's commands)."""

import getpass
import json
from typing import Annotated, Any

import typer

import commands
from hub.registry import with_dependencies


def _service(rt: Any) -> Any:
    return commands.feature_interface(rt, "feedback")


def _plain(case: dict[str, Any]) -> dict[str, Any]:
    from hub.store import dumps

    return json.loads(dumps(case))


def register(app: typer.Typer) -> None:
    """Add the case commands to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt

    case_app = typer.Typer(help="One case: show it, acknowledge, resolve, close or reopen it.", no_args_is_help=True)
    app.add_typer(case_app, name="case")

    @app.command("cases")
    def cases_cmd(
        config: ConfigOpt = None,
        status: Annotated[str | None, typer.Option("--status", help="new, acknowledged, resolved or closed.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
        as_json: JsonOpt = False,
    ) -> None:
        """Negative-feedback cases, newest first."""

        from hub.features.feedback.render import SEVERITY_ZH, STATUS_ZH, score_line
        from hub.features.feedback.sla import format_left

        if status and status not in ("new", "acknowledged", "resolved", "closed"):
            raise commands.fail(f"--status {status!r}: use new, acknowledged, resolved or closed")
        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
            service = _service(rt)
            rows = service.list(status, limit)
            now = rt.clock()
        if as_json:
            for r in rows:
                print(json.dumps(_plain(r), ensure_ascii=False))
            return
        from commands.display import table as display_table

        table = display_table("id", "status", "sev", "store", "score", "text", "SLA", "level")
        for r in rows:
            s = r["doc"]["summary"]
            if r["status"] == "new":
                sla = "ack " + format_left(r["ack_due_at"], now)
            elif r["status"] == "acknowledged":
                sla = "resolve " + format_left(r["resolve_due_at"], now)
            else:
                sla = ""
            table.add_row(
                str(r["id"]),
                STATUS_ZH.get(r["status"], r["status"]),
                SEVERITY_ZH.get(r["severity"], r["severity"]),
                s.get("store_name") or "",
                score_line(s),
                (s.get("text") or "")[:30],
                sla,
                str(r["level"]),
            )
        commands.console.print(table)
        commands.console.print(f"{len(rows)} case(s)", highlight=False)

    @case_app.command("show")
    def show(
        case_id: Annotated[int, typer.Argument(help="Case id.")],
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """A case with its ladder and its audit trail (who, when, how)."""
        from hub.features.feedback.cases import CaseNotFound
        from hub.features.feedback.render import STATUS_ZH, score_line

        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
            try:
                case = _service(rt).get(case_id)
            except CaseNotFound as exc:
                raise commands.fail(str(exc)) from None
        if as_json:
            print(json.dumps(_plain(case), ensure_ascii=False))
            return
        s = case["doc"]["summary"]
        c = commands.console
        c.print(
            f"[bold]case #{case['id']}[/] {case['status']} ({STATUS_ZH.get(case['status'])}), "
            f"severity {case['severity']}, {case['touchpoints']} touchpoint(s)",
            highlight=False,
        )
        c.print(
            f"store: {s.get('store_name')}  score: {score_line(s)}  order: {s.get('order_id') or '-'}", highlight=False
        )
        if s.get("text"):
            c.print(f"text: {s['text']}", highlight=False)
        c.print(f"why: {'; '.join(case['doc'].get('reasons') or [])}", highlight=False)
        from commands.display import Display
        from commands.display import table as display_table

        show = Display(rt.config)
        c.print(
            f"opened {show.when(case['opened_at'])}, ack due {show.when(case['ack_due_at'])}, "
            f"resolve due {show.when(case['resolve_due_at'])} ({show.zone_name})",
            highlight=False,
        )
        for i, lv in enumerate(case["doc"]["levels"]):
            mark = "→" if i <= case["level"] else " "
            c.print(f" {mark} level {i}: {lv['label']}: {', '.join(lv['contacts']) or '-'}", highlight=False)
        table = display_table(show.column("at"), "action", "who", "via", "detail")
        for e in case["events"]:
            detail = e["note"] or ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items() if k != "reasons")
            table.add_row(show.when(e["at"], seconds=True), e["action"], e["actor"], e["via"], detail[:80])
        c.print(table)

    def _act(action: str, case_id: int, config: Any, by: str | None, note: str | None, as_json: bool) -> None:
        from hub.features.feedback.cases import CaseNotFound

        actor = by or getpass.getuser()
        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
            try:
                result = _service(rt).transition(case_id, action, actor=actor, via="cli", note=note)
            except CaseNotFound as exc:
                raise commands.fail(str(exc)) from None
        if as_json:
            print(
                json.dumps(
                    {
                        "id": case_id,
                        "changed": result.changed,
                        "status": result.case["status"],
                        "message": result.message,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            commands.console.print(
                ("[green]✓[/] " if result.changed else "[yellow]·[/] ") + result.message, highlight=False
            )
        if not result.changed:
            raise typer.Exit(1)

    ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: your login name).")]
    NoteOpt = Annotated[str | None, typer.Option("--note", help="A note for the audit trail.")]

    @case_app.command("ack")
    def ack(
        case_id: int, config: ConfigOpt = None, by: ByOpt = None, note: NoteOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Acknowledge a case: escalation stops, the resolve clock runs."""
        _act("ack", case_id, config, by, note, as_json)

    @case_app.command("resolve")
    def resolve(
        case_id: int, config: ConfigOpt = None, by: ByOpt = None, note: NoteOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Mark a case resolved (the recovery survey goes out when configured)."""
        _act("resolve", case_id, config, by, note, as_json)

    @case_app.command("close")
    def close(
        case_id: int, config: ConfigOpt = None, by: ByOpt = None, note: NoteOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Close a resolved case."""
        _act("close", case_id, config, by, note, as_json)

    @case_app.command("reopen")
    def reopen(
        case_id: int, config: ConfigOpt = None, by: ByOpt = None, note: NoteOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Reopen a resolved or closed case: a fresh SLA and a fresh notification."""
        _act("reopen", case_id, config, by, note, as_json)

    @case_app.command("reroute")
    def reroute(case_id: int, config: ConfigOpt = None, by: ByOpt = None) -> None:
        """Route an open case again with the current rules and notify its new first level."""
        from hub.features.feedback.cases import CaseNotFound

        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
            try:
                case = _service(rt).reroute(case_id, actor=by or getpass.getuser(), via="cli")
            except CaseNotFound as exc:
                raise commands.fail(str(exc)) from None
        first = case["doc"]["levels"][0]
        commands.console.print(
            f"case #{case_id} ({case['status']}): level 0 {first['label']}: {', '.join(first['contacts']) or '-'}",
            highlight=False,
        )
