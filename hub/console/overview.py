"""The core's tiles of the overview: touchpoints per hour by channel over the last 24 hours.

The query reads an index whatever the viewer: a manager's stores through
``ix_touchpoints_store_occurred`` (store, occurred_at), HQ through ``ix_touchpoints_kind_occurred``
with every kind of the closed list (:class:`hub.model.EventKind`), which is the same rows as no
kind filter at all. Hours are counted in SQL (UTC hours: the config's timezone is a whole number of
hours from UTC in China) and labelled in the config's timezone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from hub.console import NavItem, Tile
from hub.model import EventKind
from hub.store.schema import touchpoints

if TYPE_CHECKING:
    from hub.console.app import ConsoleApp
    from hub.console.scope import Principal

HOURS = 24
#: channels drawn one by one; the rest add up to "other"
TOP_CHANNELS = 8


def add_nav_once(app: ConsoleApp, item: NavItem) -> None:
    """Add a menu entry unless this registry has it (a runtime may build its web app twice)."""
    if all(n.path != item.path for n in app.registry.nav):
        app.registry.add_nav(item)


def hourly_query(principal: Principal, since: datetime, dialect: str) -> Any:
    """``(hour, channel, count)`` of the touchpoints in scope since ``since``."""
    if dialect == "sqlite":
        hour: Any = func.strftime("%Y-%m-%d %H:00:00", touchpoints.c.occurred_at)
    else:
        hour = func.date_trunc("hour", touchpoints.c.occurred_at)
    q = select(hour.label("hour"), touchpoints.c.channel, func.count().label("n")).where(
        touchpoints.c.occurred_at >= since, principal.clause(touchpoints.c.store)
    )
    if principal.hq:
        # every kind there is: the same rows, read through (kind, occurred_at)
        q = q.where(touchpoints.c.kind.in_([k.value for k in EventKind]))
    return q.group_by(hour, touchpoints.c.channel)


def hourly(app: ConsoleApp, principal: Principal) -> dict[str, Any]:
    """The chart's hours (labels in the config's timezone), channels and counts."""
    now = app.rt.store.clock().astimezone(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=HOURS - 1)
    hours = [start + timedelta(hours=i) for i in range(HOURS)]
    index = {h: i for i, h in enumerate(hours)}
    counts: dict[str, list[int]] = {}
    with app.rt.store.connect() as conn:
        for hour, channel, n in conn.execute(hourly_query(principal, start, app.rt.store.dialect)):
            if isinstance(hour, str):
                at = datetime.strptime(hour, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            else:
                at = hour.astimezone(UTC) if hour.tzinfo else hour.replace(tzinfo=UTC)
            i = index.get(at)
            if i is None:  # a touchpoint dated in the future: not on this chart
                continue
            counts.setdefault(channel or "-", [0] * HOURS)[i] += int(n)
    ranked = sorted(counts, key=lambda c: -sum(counts[c]))
    shown = {c: counts[c] for c in ranked[:TOP_CHANNELS]}
    rest = [sum(counts[c][i] for c in ranked[TOP_CHANNELS:]) for i in range(HOURS)]
    if any(rest):
        shown["…"] = rest
    labels = [app.localtime(h, "%H:00") for h in hours]
    return {"labels": labels, "series": shown, "total": sum(sum(v) for v in counts.values())}


def render_hourly(app: ConsoleApp, principal: Principal) -> str:
    data = hourly(app, principal)
    options = {
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll", "bottom": 0},
        "grid": {"left": 40, "right": 16, "top": 16, "bottom": 48},
        "xAxis": {"type": "category", "data": data["labels"]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {"name": name, "type": "bar", "stack": "all", "data": values} for name, values in data["series"].items()
        ],
    }
    template = app.env.get_template("ops_tile_hourly.html")
    return template.render(
        t=lambda key, **kw: app.t(principal, key, **kw),
        options=options,
        total=data["total"],
        chart_id="chart-touchpoints-hourly",
    )


def install_tiles(app: ConsoleApp) -> None:
    """The core's tiles, once per registry."""
    if all(t.name != "touchpoints-hourly" for t in app.registry.tiles):
        app.registry.add_tile(
            Tile(
                name="touchpoints-hourly",
                title="ops.tile.hourly",
                render=render_hourly,
                permission="data.read",
                order=10,
                refresh_seconds=300,
                topics=(),
            )
        )
