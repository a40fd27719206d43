"""``cxhub customers show|score|at-risk`` and ``cxhub stats --at-risk``: the customer view and churn risk."""

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hub.runtime import Runtime

ScopeOpt = Annotated[
    str, typer.Option("--scope", help="What you may see: hq, region:ID, district:ID or store:ID (feedback.org).")
]


def _service(rt: "Runtime") -> Any:
    from commands import feature_interface

    return feature_interface(rt, "customers")


def _scope(value: str) -> Any:
    from hub.features.customers.access import Scope

    try:
        return Scope.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def print_at_risk(data: dict[str, Any], as_json: bool) -> None:
    """The at-risk table by store and the customers with the most value at risk."""
    from rich.table import Table

    from commands import console, dump_json

    if as_json:
        print(dump_json(data))
        return
    by_store = Table("store", "district", "region", "customers at risk", "value at risk (¥)")
    for s in data["stores"]:
        by_store.add_row(
            s["store"] or "-", s["district"] or "", s["region"] or "", str(s["customers"]), f"{s['value_at_risk']:,.2f}"
        )
    console.print(by_store)
    top = Table("customer", "store", "risk", "value at risk (¥)", "why")
    for c in data["customers"]:
        top.add_row(
            c["customer_id"][:8],
            c["store"] or "-",
            f"{c['risk']:.0%}",
            f"{c['value_at_risk']:,.2f}",
            "; ".join(c["reasons"]),
        )
    console.print(top)
    console.print(f"scope {data['scope']}, risk >= {data['min_risk']:.0%}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``cxhub customers ...`` to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt, console, dump_json, fail, runtime

    customers = typer.Typer(help="The customer view and churn risk (docs/customers.md).", no_args_is_help=True)
    app.add_typer(customers, name="customers")

    @customers.command()
    def show(
        customer_id: Annotated[str | None, typer.Argument(help="A customer id.")] = None,
        phone: Annotated[str | None, typer.Option(help="Find the customer by phone number.")] = None,
        openid: Annotated[str | None, typer.Option(help="Find the customer by WeChat openid.")] = None,
        scope: ScopeOpt = "hq",
        reveal: Annotated[bool, typer.Option(help="Show identities and texts unmasked.")] = False,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """One customer: identities, spend, frequency, recency, NPS/CSAT and trend, cases, topics,
        stores, churn risk with its reasons, and the timeline (masked unless --reveal)."""
        from hub.features.customers.access import CustomerNotFound

        sc = _scope(scope)
        if not (customer_id or phone or openid):
            raise fail("give a customer id, --phone or --openid", code=2)
        with runtime(config) as rt:
            svc = _service(rt)
            try:
                cid = svc.find(customer_id=customer_id, phone=phone, openid=openid)
                data = svc.profile(cid, sc, reveal=reveal)
            except CustomerNotFound as exc:
                raise fail(str(exc)) from None
        if as_json:
            print(dump_json(data))
            return
        _print_profile(data)

    @customers.command()
    def score(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        """Fit the purchase model and score every customer now (cxhub run does it every score_every)."""
        from dataclasses import asdict

        with runtime(config) as rt:
            report = _service(rt).score()
        if as_json:
            print(json.dumps(asdict(report), ensure_ascii=False))
            return
        m = report.model
        if m:
            console.print(
                f"model: BG/NBD r={m['r']:.3f} alpha={m['alpha']:.2f} a={m['a']:.3f} b={m['b']:.3f} "
                f"on {m['customers']} customers",
                highlight=False,
            )
        else:
            console.print(f"model: none ({report.model_error})", highlight=False)
        console.print(
            f"scored {report.customers} customers in {report.seconds:.1f}s: {report.at_risk} at risk, "
            f"{report.insufficient} with insufficient history; {report.unattributed} transaction(s) without a customer "
            "(not scored)",
            highlight=False,
        )
        for decision, n in sorted(report.actions.items()):
            console.print(f"actions: {decision} {n}", highlight=False)

    @customers.command("at-risk")
    def at_risk_cmd(
        config: ConfigOpt = None,
        scope: ScopeOpt = "hq",
        min_risk: Annotated[float | None, typer.Option(help="Default: customers.at_risk.")] = None,
        limit: Annotated[int, typer.Option(help="Customers listed.")] = 20,
        as_json: JsonOpt = False,
    ) -> None:
        """At-risk customers by store, with the value at risk (as `cxhub stats --at-risk`)."""
        sc = _scope(scope)
        with runtime(config) as rt:
            data = _service(rt).at_risk(sc, min_risk=min_risk, limit=limit)
        print_at_risk(data, as_json)


def stats_at_risk(config: Any, scope: str, as_json: bool) -> None:
    """``cxhub stats --at-risk`` (the option lives on the surveys' stats command)."""
    from commands import runtime

    sc = _scope(scope)
    with runtime(config) as rt:
        data = _service(rt).at_risk(sc, limit=20)
    print_at_risk(data, as_json)


def _print_profile(p: dict[str, Any]) -> None:
    from rich.table import Table

    from commands import console

    console.print(f"[bold]customer {p['customer_id']}[/] (scope {p['scope']})", highlight=False)
    for i in p["identities"]:
        console.print(f"  {i['namespace']}{'@' + i['scope'] if i['scope'] else ''}: {i['value']}", highlight=False)
    rec = "-" if p["recency_days"] is None else f"{p['recency_days']} days ago"
    console.print(f"spend ¥{p['spend']} · {p['frequency']} purchase day(s) · last purchase {rec}", highlight=False)
    for k in ("nps", "csat"):
        hist = p[k]["history"]
        if hist:
            vals = " ".join(str(h[k]) for h in hist[-8:])
            console.print(f"{k.upper()}: {vals} ({p[k]['trend'] or 'one answer'})", highlight=False)
    c = p["cases"]
    console.print(f"cases: {len(c['list'])} ({c['open']} open, {c['breached']} breached)", highlight=False)
    if p["topics"]:
        console.print("topics: " + ", ".join(f"{t} ×{n}" for t, n in p["topics"].items()), highlight=False)
    if p["stores"]:
        console.print("stores: " + ", ".join(f"{s['store']} ×{s['visits']}" for s in p["stores"]), highlight=False)
    s = p["score"]
    if s:
        console.print(
            f"churn risk {s['risk']:.0%} (value at risk ¥{s['value_at_risk']:,.2f}), scored {s['scored_at']:%Y-%m-%d %H:%M}",
            highlight=False,
        )
        for r in s["reasons"]:
            console.print(f"  - {r['text']}", highlight=False)
    else:
        console.print("churn risk: not scored yet (cxhub customers score)", highlight=False)
    t = Table("when (UTC)", "what", "store", "detail")
    for e in p["timeline"]:
        detail = " ".join(
            str(x)
            for x in (
                e.get("amount") and f"¥{e['amount']}",
                e.get("items") and "、".join(str(i) for i in e["items"]),
                e.get("nps") is not None and f"NPS {e['nps']}",
                e.get("csat") is not None and f"CSAT {e['csat']}",
                e.get("rating") is not None and f"rating {e['rating']}",
                e.get("text"),
                e.get("status") and f"{e['severity']} {e['status']}" + (" breached" if e.get("breached") else ""),
            )
            if x
        )
        t.add_row(e["at"].strftime("%Y-%m-%d %H:%M") if e["at"] else "", e["kind"], e.get("store") or "", detail)
    console.print(t)
