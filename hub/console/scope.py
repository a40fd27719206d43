"""Who may see and do what in the console: roles, the org hierarchy, and the principal of a request.

The org hierarchy (HQ -> region -> district -> store) is the one the config already holds: features
give their units through :meth:`hub.feature.Feature.org_units` (the feedback feature's ``org:``).
A user has a role and a unit; the unit decides the **stores** the user sees:

==================  ==========================  =======================================
role                unit                        sees
==================  ==========================  =======================================
admin               none (HQ)                   everything; manages users; may reveal
integrator          none (HQ)                   connectors, mappings, quarantine, outbox
hq_analyst          none (HQ)                   all business data, personal data masked
region_manager      a region id                 the stores of that region
district_manager    a district id               the stores of that district
store_manager       a store id                  that store
agent               a store id                  that store (no export)
==================  ==========================  =======================================

Every query of the console is scoped on the server with :meth:`Principal.clause` (SQL) or
:meth:`Principal.sees_store` (one object); a unit the config no longer knows sees nothing, never
everything. Business data without a store (a review that named none) is HQ's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from sqlalchemy import ColumnElement, false, true

from hub.config import RoleName

ROLES: tuple[str, ...] = get_args(RoleName)

#: what each permission lets a user do
PERMISSIONS: dict[str, str] = {
    "data.read": "read business data (cases, surveys, customers, charts) in the user's scope",
    "cases.act": "acknowledge, assign, annotate, resolve, reopen cases and mark them not negative",
    "data.export": "export what the user can read (CSV / Excel), masked as on screen",
    "pii.reveal": "reveal a masked phone number, openid or name (an audited action)",
    "ops.read": "see connectors, the outbox and the quarantine",
    "ops.act": "replay quarantined records and dead messages, pause and resume sources",
    "audit.read": "read the audit log",
    "users.manage": "add, change and disable console users and their API tokens",
    "privacy.forget": "forget a customer everywhere (right to be forgotten)",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "integrator": frozenset({"ops.read", "ops.act"}),
    "hq_analyst": frozenset({"data.read", "data.export"}),
    "region_manager": frozenset({"data.read", "cases.act", "data.export"}),
    "district_manager": frozenset({"data.read", "cases.act", "data.export"}),
    "store_manager": frozenset({"data.read", "cases.act", "data.export"}),
    "agent": frozenset({"data.read", "cases.act"}),
}

#: the kind of unit each role is bound to (None: HQ-wide, no unit)
ROLE_UNIT: dict[str, str | None] = {
    "admin": None,
    "integrator": None,
    "hq_analyst": None,
    "region_manager": "region",
    "district_manager": "district",
    "store_manager": "store",
    "agent": "store",
}

#: roles whose business data is not bounded by a unit
HQ_ROLES = frozenset(r for r, kind in ROLE_UNIT.items() if kind is None)


class ScopeError(ValueError):
    """A role or unit that does not fit the org hierarchy (names the value and the reason)."""


@dataclass(frozen=True)
class OrgUnit:
    """One node of the hierarchy: ``kind`` is hq / region / district / store."""

    id: str
    kind: str
    name: str = ""
    parent: str | None = None


@dataclass(frozen=True)
class OrgTree:
    """The hierarchy as the console needs it: every unit, and the stores under each."""

    units: Mapping[str, OrgUnit] = field(default_factory=dict)

    @classmethod
    def build(cls, units: Iterable[OrgUnit]) -> OrgTree:
        by_id: dict[str, OrgUnit] = {}
        for u in units:
            by_id.setdefault(f"{u.kind}:{u.id}", u)
        return cls(by_id)

    def get(self, kind: str, unit_id: str) -> OrgUnit | None:
        return self.units.get(f"{kind}:{unit_id}")

    def of_kind(self, kind: str) -> list[OrgUnit]:
        return sorted((u for u in self.units.values() if u.kind == kind), key=lambda u: u.id)

    def stores_under(self, kind: str, unit_id: str) -> frozenset[str]:
        """The store ids below (or equal to) one unit; empty for a unit the hierarchy lacks."""
        if self.get(kind, unit_id) is None:
            return frozenset()
        if kind == "store":
            return frozenset({unit_id})
        out = set()
        for store in self.of_kind("store"):
            if unit_id in self.ancestors(store.id):
                out.add(store.id)
        return frozenset(out)

    def ancestors(self, store_id: str) -> tuple[str, ...]:
        """(district, region) ids above a store, as far as the config says."""
        chain: list[str] = []
        node = self.get("store", store_id)
        for kind in ("district", "region"):
            if node is None or not node.parent:
                break
            chain.append(node.parent)
            node = self.get(kind, node.parent)
        return tuple(chain)

    def store_name(self, store_id: str | None) -> str:
        if not store_id:
            return ""
        node = self.get("store", store_id)
        return node.name if node and node.name else store_id

    def check(self, role: str, unit: str | None) -> None:
        """Raise :class:`ScopeError` unless ``unit`` is the kind of unit ``role`` needs."""
        if role not in ROLES:
            raise ScopeError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        kind = ROLE_UNIT[role]
        if kind is None:
            if unit:
                raise ScopeError(f"role {role!r} is HQ-wide and takes no unit (got {unit!r})")
            return
        if not unit:
            raise ScopeError(f"role {role!r} needs a {kind} id (--unit)")
        if self.get(kind, unit) is None:
            known = ", ".join(u.id for u in self.of_kind(kind)) or "none in the config"
            raise ScopeError(f"unknown {kind} {unit!r} for role {role!r}; known: {known}")


@dataclass(frozen=True)
class Principal:
    """The user behind one request, with the stores they may see (None: every store and HQ data)."""

    user_id: int
    login: str
    display_name: str
    role: str
    unit: str | None
    stores: frozenset[str] | None
    may_reveal: bool = False
    locale: str = "zh"
    #: "session" (a browser, CSRF-checked) or "token" (a script's API token)
    via: str = "session"
    csrf: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)  # no part of its hash

    @classmethod
    def of(
        cls,
        tree: OrgTree,
        *,
        user_id: int,
        login: str,
        display_name: str,
        role: str,
        unit: str | None,
        reveal_roles: Iterable[str] = ("admin",),
        locale: str = "zh",
        via: str = "session",
        csrf: str = "",
    ) -> Principal:
        kind = ROLE_UNIT.get(role)
        if role not in ROLE_PERMISSIONS:
            stores: frozenset[str] | None = frozenset()  # an unknown role (a row edited by hand) sees nothing
        elif kind is None:
            stores = None if "data.read" in ROLE_PERMISSIONS[role] else frozenset()
        else:
            stores = tree.stores_under(kind, unit or "")
        return cls(
            user_id=user_id,
            login=login,
            display_name=display_name,
            role=role,
            unit=unit,
            stores=stores,
            # revealing is for roles that read business data and that the config names
            may_reveal=role in set(reveal_roles) and "data.read" in ROLE_PERMISSIONS.get(role, frozenset()),
            locale=locale,
            via=via,
            csrf=csrf,
        )

    @property
    def permissions(self) -> frozenset[str]:
        perms = set(ROLE_PERMISSIONS.get(self.role, frozenset()))
        if self.may_reveal:
            perms.add("pii.reveal")
        else:
            perms.discard("pii.reveal")
        return frozenset(perms)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def hq(self) -> bool:
        """Whether the user sees every store (and the data that names none)."""
        return self.stores is None

    def sees_store(self, store: str | None) -> bool:
        """Whether one object of ``store`` is in scope."""
        if self.stores is None:
            return "data.read" in self.permissions
        return store is not None and store in self.stores

    def clause(self, column: Any) -> ColumnElement[bool]:
        """A WHERE clause that keeps only the rows of ``column`` (a store column) in scope."""
        if "data.read" not in self.permissions:
            return false()
        if self.stores is None:
            return true()
        if not self.stores:
            return false()
        return column.in_(sorted(self.stores))  # type: ignore[no-any-return,unused-ignore]
