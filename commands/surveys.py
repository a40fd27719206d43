"""``cxhub invitations`` and ``cxhub stats``: what the survey rules decided, and what customers said."""

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer


def _since(value: str | None, now: datetime) -> datetime | None:
    """``7d`` / ``12h`` (ago), or an ISO date / datetime (naive = Asia/Shanghai)."""
    if not value:
        return None
    from zoneinfo import ZoneInfo

    from hub.features.surveys.config import DEFAULT_TIMEZONE, seconds

    try:
        return now - timedelta(seconds=seconds(value))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give a duration (7d, 12h) or a date (2026-11-01)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(DEFAULT_TIMEZONE))
    return when.astimezone(UTC)


def register(app: typer.Typer) -> None:
    """Add the surveys commands to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt, console, dump_json, runtime

    @app.command()
    def invitations(
        config: ConfigOpt = None,
        decision: Annotated[
            str | None, typer.Option(help="Only this decision: scheduled, deferred or suppressed.")
        ] = None,
        reason: Annotated[str | None, typer.Option(help="Only this reason (sampled_out, capped_global...).")] = None,
        since: Annotated[str | None, typer.Option(help="Created within (7d) or since a date.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
        as_json: JsonOpt = False,
    ) -> None:
        """Survey invitations with their decision and why (suppressed / deferred say the reason)."""
        from commands.display import Display
        from commands.display import table as display_table
        from hub.features.surveys.stats import list_invitations

        with runtime(config, features=()) as rt, rt.store.connect() as conn:
            rows = list_invitations(
                conn, now=rt.clock(), decision=decision, reason=reason, since=_since(since, rt.clock()), limit=limit
            )
        if as_json:
            for r in rows:
                print(dump_json(r))
            return
        show = Display(rt.config)
        table = display_table(
            show.column("created"), "rule", "customer", "store", "channel", "decision", "status", "why / blocks"
        )
        for r in rows:
            why = r["detail"] or ", ".join(r.get("blocks") or [])
            table.add_row(
                show.when(r["created_at"]),
                r["rule"],
                (r["customer_id"] or "")[:8],
                show.store(r["store"]),
                r["channel"] or "",
                r["decision"] + (f" ({r['reason']})" if r["reason"] else ""),
                r["status"],
                why,
            )
        console.print(table)
        console.print(f"{len(rows)} invitation(s)", highlight=False)

    @app.command()
    def stats(
        config: ConfigOpt = None,
        by: Annotated[
            str | None,
            typer.Option("--by", help="Group by store, category or channel; `topic`: the drivers report (feedback)."),
        ] = None,
        since: Annotated[str | None, typer.Option(help="Within (30d) or since a date (default: everything).")] = None,
        at_risk: Annotated[
            bool, typer.Option("--at-risk", help="At-risk customers by store, with value at risk (customers feature).")
        ] = False,
        scope: Annotated[str, typer.Option(help="With --at-risk: hq, region:ID, district:ID or store:ID.")] = "hq",
        as_json: JsonOpt = False,
    ) -> None:
        """NPS (%9-10 minus %0-6), CSAT (top-2 of 5), CES (mean), response rate and counts;
        with --at-risk, the customers at risk of churning by store."""
        from hub.features.surveys.stats import GROUPINGS, compute_stats

        if at_risk:
            from commands.customers import stats_at_risk

            stats_at_risk(config, scope, as_json)
            return

        if by == "topic":  # the feedback feature's topics: top negative ones per store and week, with scores
            from commands.feedback import print_drivers

            start = _since(since, datetime.now(UTC)) if since else None
            weeks = max(1, -(-(datetime.now(UTC) - start).days // 7)) if start else 4
            print_drivers(config, weeks=weeks, as_json=as_json)
            return
        if by is not None and by not in GROUPINGS:
            raise typer.BadParameter(f"--by {by!r}: choose one of {', '.join(GROUPINGS)}")
        with runtime(config, features=()) as rt, rt.store.connect() as conn:
            groups = compute_stats(conn, by=by, since=_since(since, rt.clock()))
        if as_json:
            for g in groups:
                print(json.dumps(g, ensure_ascii=False))
            return
        from commands.display import Display
        from commands.display import table as display_table

        show = Display(rt.config)
        table = display_table(by or "all", "invited", "unsent", "suppressed", "responses", "rate", "NPS", "CSAT", "CES")
        for g in groups:
            # unsent: invited, then expired, cancelled or refused at send time (out of the rate)
            unsent = ", ".join(f"{k} {v}" for k, v in (g.get("unsent_by_reason") or {}).items())
            table.add_row(
                show.store(g["group"]) if by == "store" else str(g["group"]),
                str(g["invited"]),
                f"{g.get('unsent', 0)}" + (f" ({unsent})" if unsent else ""),
                str(g["suppressed"]),
                str(g["responses"]),
                _pct(g["response_rate"]),
                _num(g["nps"], g["nps_n"]),
                _num(g["csat"], g["csat_n"], "%"),
                _num(g["ces"], g["ces_n"]),
            )
        console.print(table)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _num(v: Any, n: int, suffix: str = "") -> str:
    return "-" if v is None else f"{v}{suffix} (n={n})"
