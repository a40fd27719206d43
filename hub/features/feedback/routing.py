"""Who gets a case: routing rules, the org hierarchy, on-duty rosters, fallbacks.

A case gets a *ladder* of levels when it opens:

- level 0: the ``notify`` lists of the matching routing rules (first match, or every match up to one
  without ``continue``); with no match, the store's own contacts; with none of those, ``fallback``;
- levels 1..: the store's district, region and HQ contacts (skipping empty levels and people already
  on the ladder), unless the matching rule says ``escalate: false``.

In a ``notify`` list, ``@store`` / ``@district`` / ``@region`` / ``@hq`` stand for that org node's
contacts. Names of rosters are expanded when a message is sent (whoever is on shift *then*), so an
escalation at 23:00 reaches the night shift.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from hub.features.feedback.config import DAYS, Endpoint, FeedbackConfig, OrgNode, RouteRule

HIERARCHY = ("store", "district", "region", "hq")


@dataclass
class RouteFacts:
    """The touchpoint fields routing looks at."""

    brand: str | None = None
    region: str | None = None
    district: str | None = None
    store: str | None = None
    channel: str | None = None
    categories: list[str] = field(default_factory=list)
    severity: str | None = None
    source: str | None = None
    kind: str | None = None
    topics: list[str] = field(default_factory=list)  # topic ids found in the text (食品安全 -> food_safety)


@dataclass
class Level:
    """One rung of the escalation ladder."""

    label: str  # "门店 徐汇店" / "区域 华东大区" / "路由规则 food-safety"
    contacts: list[str]


@dataclass
class OrgPath:
    """The org nodes above a store (keys into ``feedback.org``), found from config and the event."""

    store: str | None
    district: str | None
    region: str | None

    def node(self, cfg: FeedbackConfig, level: str) -> OrgNode | None:
        if level == "hq":
            return cfg.org.hq
        key = getattr(self, level)
        nodes = {"store": cfg.org.stores, "district": cfg.org.districts, "region": cfg.org.regions}[level]
        return nodes.get(key) if key else None


def org_path(cfg: FeedbackConfig, facts: RouteFacts) -> OrgPath:
    """Complete the path from the config's parents (a store knows its district, a district its region)."""
    store = facts.store
    district = facts.district
    region = facts.region
    node = cfg.org.stores.get(store) if store else None
    if node is not None and node.parent:
        district = node.parent
    dnode = cfg.org.districts.get(district) if district else None
    if dnode is not None and dnode.parent:
        region = dnode.parent
    return OrgPath(store, district, region)


def _matches(values: list[str] | None, actual: list[str]) -> bool:
    if values is None:
        return True
    return any(fnmatch.fnmatchcase(a, pattern) for pattern in values for a in actual)


def rule_matches(rule: RouteRule, facts: RouteFacts) -> bool:
    """Every field the rule names matches one of its values."""
    w = rule.when
    single = {
        "brand": facts.brand,
        "region": facts.region,
        "district": facts.district,
        "store": facts.store,
        "channel": facts.channel,
        "severity": facts.severity,
        "source": facts.source,
        "kind": facts.kind,
    }
    for name, actual in single.items():
        wanted = getattr(w, name)
        if wanted is not None and (actual is None or not _matches(list(wanted), [actual])):
            return False
    if w.topic is not None and not _matches(w.topic, facts.topics):
        return False
    return w.category is None or _matches(w.category, facts.categories)


class CaseRouter:
    """Builds the escalation ladder of a case and resolves names to endpoints at send time."""

    def __init__(self, cfg: FeedbackConfig):
        self.cfg = cfg

    def ladder(self, facts: RouteFacts) -> tuple[list[Level], str]:
        """The levels, and a short explanation of how they were chosen (kept on the case)."""
        cfg = self.cfg
        path = org_path(cfg, facts)
        # the event's district/region may be missing: take the ones the org config knows
        facts.district = facts.district or path.district
        facts.region = facts.region or path.region
        first: list[str] = []
        matched: list[str] = []
        escalate = True
        for i, rule in enumerate(cfg.routing):
            if not rule_matches(rule, facts):
                continue
            matched.append(rule.name or f"routing[{i}]")
            first += [n for n in self._expand_org(rule.notify, path) if n not in first]
            escalate = escalate and rule.escalate
            if not rule.continue_:
                break
        if matched:
            how = "rules " + ", ".join(matched)
        else:
            first = self._expand_org(["@store"], path)
            how = f"store {path.store}" if first else ""
        if not first:
            first = list(cfg.fallback)
            how = "fallback" if first else "nobody (no rule, no store contacts, no fallback)"
        levels = [Level(self._label(path, "store") if not matched else "路由: " + ", ".join(matched), first)]
        if escalate:
            seen = set(first)
            for level in HIERARCHY[1:]:
                node = path.node(cfg, level)
                contacts = [c for c in (node.contacts if node else []) if c not in seen]
                if contacts:
                    levels.append(Level(self._label(path, level), contacts))
                    seen.update(contacts)
        return levels, how

    def _expand_org(self, names: list[str], path: OrgPath) -> list[str]:
        out: list[str] = []
        for name in names:
            if name.startswith("@") and name[1:] in HIERARCHY:
                node = path.node(self.cfg, name[1:])
                out += [c for c in (node.contacts if node else []) if c not in out]
            elif name not in out:
                out.append(name)
        return out

    def _label(self, path: OrgPath, level: str) -> str:
        node = path.node(self.cfg, level)
        title = {"store": "门店", "district": "片区", "region": "大区", "hq": "总部"}[level]
        key = "" if level == "hq" else (getattr(path, level) or "")
        return f"{title} {(node.name if node else None) or key}".strip()

    def on_duty(self, roster_name: str, now: datetime) -> list[str]:
        """Contacts of ``roster_name`` on shift at ``now`` (its fallback when nobody is)."""
        roster = self.cfg.rosters[roster_name]
        local = now.astimezone(ZoneInfo(roster.timezone or self.cfg.timezone))
        today = DAYS[local.weekday()]
        yesterday = DAYS[(local.weekday() - 1) % 7]
        t = local.time()
        out: list[str] = []
        for shift in roster.shifts:
            if shift.start <= shift.end:
                on = today in shift.days and shift.start <= t < shift.end
            else:  # overnight: 22:00-06:00 belongs to the day it starts
                on = (today in shift.days and t >= shift.start) or (yesterday in shift.days and t < shift.end)
            if on:
                out += [c for c in shift.contacts if c not in out]
        return out or list(roster.fallback)

    def contacts_now(self, names: list[str], now: datetime) -> list[str]:
        """Names with rosters replaced by whoever is on duty at ``now``."""
        out: list[str] = []
        for name in names:
            expanded = self.on_duty(name, now) if name in self.cfg.rosters else [name]
            for c in expanded:
                if c in self.cfg.rosters:  # a roster's fallback may name another roster: one hop only
                    expanded_fb = self.on_duty(c, now)
                    out += [x for x in expanded_fb if x not in out and x in self.cfg.contacts]
                elif c not in out:
                    out.append(c)
        return out

    def endpoints(self, names: list[str], now: datetime) -> dict[str, Endpoint]:
        """One merged endpoint per destination for these contacts (recipients and mentions unioned),
        so a level with three people on one DingTalk app is one work notice, not three."""
        merged: dict[str, Endpoint] = {}
        for name in self.contacts_now(names, now):
            contact = self.cfg.contacts.get(name)
            if contact is None:
                continue
            for ep in contact.endpoints:
                cur = merged.get(ep.destination)
                if cur is None:
                    merged[ep.destination] = Endpoint(
                        destination=ep.destination, to=list(ep.to), mention=list(ep.mention)
                    )
                else:
                    cur.to += [x for x in ep.to if x not in cur.to]
                    cur.mention += [x for x in ep.mention if x not in cur.mention]
        return merged

    def store_info(self, store: str | None) -> OrgNode | None:
        """The configured node of a store (name, time zone, business hours)."""
        return self.cfg.org.stores.get(store) if store else None
