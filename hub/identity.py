"""Identity resolution: identities that arrive together join one customer.

openid / unionid / alipay_uid / member_id / phone-hash... each (namespace, scope, value) points at
one customer. An event whose identities point at two customers merges them into the older one
(by creation time; ties by id), the *survivor*: the core moves its own rows (identities,
touchpoints, the opt-out, earlier merges) and every feature moves its own through its merge hook
(:meth:`hub.feature.Feature.on_merge`), in the ingest's transaction.
Sensitive values (phone, email) are replaced by keyed hashes before anything is stored; the
reachable contact is kept encrypted beside the hash.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, select, text, true, update

from hub.model import TouchpointEvent, uuid_text
from hub.privacy import SENSITIVE_NAMESPACES, Vault, has_phone, mask_text, phones_in
from hub.store import copy_new_rows, dumps
from hub.store.schema import customers, identities, touchpoints

Key = tuple[str, str, str]


class MergeHook(Protocol):
    """Moves a feature's rows from the ``absorbed`` customers to ``survivor`` (see
    :meth:`hub.feature.Feature.on_merge`)."""

    def __call__(self, conn: Connection, absorbed: Sequence[str], survivor: str, now: datetime) -> None: ...


def _chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _new_customer_id() -> str:
    """A random (version 4) UUID, as ``str(uuid.uuid4())`` but in a third of its time."""
    return uuid_text(os.urandom(16).hex(), 4)


class IdentityResolver:
    """Assigns ``customer.customer_id`` to events, inside the caller's transaction."""

    def __init__(self, vault: Vault, merges: Sequence[MergeHook] = ()):
        self.vault = vault
        #: called on every merge, after the core's own tables moved (the runtime's list: features')
        self.merges: list[MergeHook] = list(merges)

    def protect(self, event: TouchpointEvent) -> dict[Key, str]:
        """Replace sensitive identity values with hashes; returns the plain values by key (to be
        encrypted for identities seen for the first time, and then forgotten)."""
        plains: dict[Key, str] = {}
        for ident in event.customer.identities:
            if ident.namespace in SENSITIVE_NAMESPACES and not ident.value.startswith("h:"):
                plain = ident.value
                ident.value = self.vault.hash(ident.namespace, plain)
                plains[(ident.namespace, ident.scope or "", ident.value)] = plain
        self.scrub(event)
        return plains

    def scrub(self, event: TouchpointEvent) -> None:
        """Phone numbers in free text (a review saying 打电话 13812345678, a text attribute) are
        masked in the event, so the stored touchpoint holds none in plain; the numbers are kept
        encrypted beside it, in ``attributes.sealed_phones``, for staff who must call back."""
        found: list[str] = []
        fb = event.feedback
        if fb is not None and fb.text and has_phone(fb.text):
            found += phones_in(fb.text)
            fb.text = mask_text(fb.text)
        attrs = event.attributes
        if attrs:
            for key, value in attrs.items():
                if type(value) is str and has_phone(value):
                    found += phones_in(value)
                    attrs[key] = mask_text(value)
        if found:
            sealed = attrs.get("sealed_phones")
            old = list(sealed) if isinstance(sealed, list) else []
            attrs["sealed_phones"] = old + [self.vault.encrypt("phone", p) for p in dict.fromkeys(found)]

    def resolve(
        self,
        conn: Connection,
        events: Sequence[TouchpointEvent],
        now: datetime,
        contacts: dict[Key, str] | None = None,
    ) -> None:
        """Set every event's customer. ``contacts``: the events were protected already (the plain
        values by key, from :meth:`protect`); otherwise they are protected here."""
        if contacts is None:
            contacts = {}
            for ev in events:
                contacts.update(self.protect(ev))
        per_event: list[list[Key]] = []
        wanted: set[Key] = set()
        for ev in events:
            keys = [(i.namespace, i.scope or "", i.value) for i in ev.customer.identities]
            per_event.append(keys)
            wanted.update(keys)
        if not wanted:
            return
        known = self._lookup(conn, list(wanted))
        new_customers: list[str] = []
        new_rows: dict[Key, dict[str, Any]] = {}
        alias: dict[str, str] = {}  # merged customer -> survivor, for events resolved before a merge
        opted: set[str] = set()  # customers of this batch that inherit an opt-out in a merge
        get = known.get
        for ev, keys in zip(events, per_event, strict=True):
            if not keys:
                continue
            # the customer the keys point at (the common case: one, or none), without a set per event
            cid = None
            several = False
            for k in keys:
                c = get(k)
                if c is not None:
                    if cid is None:
                        cid = c
                    elif c != cid:
                        several = True
            if cid is None:
                cid = _new_customer_id()
                new_customers.append(cid)
            elif several:
                found = {known[k] for k in keys if k in known}
                cid = self._merge(conn, found, known, new_rows, alias, new_customers, now, opted)
            for k in keys:
                if k not in known:
                    known[k] = cid
                    new_rows[k] = {
                        "namespace": k[0],
                        "scope": k[1],
                        "value": k[2],
                        "customer_id": cid,
                        "contact": self.vault.encrypt(k[0], contacts[k]) if k in contacts else None,
                        "first_seen": now,
                    }
            ev.customer.customer_id = cid
        if alias:
            for ev in events:
                resolved = ev.customer.customer_id
                while resolved in alias:
                    resolved = alias[resolved]
                ev.customer.customer_id = resolved
        if new_customers:
            copy_new_rows(  # fresh uuid4s
                conn,
                customers,
                [
                    {"id": c, "created_at": now, "opted_out": c in opted, "merged_into": alias.get(c)}
                    for c in new_customers
                ],
                ["id"],
            )
        if new_rows:
            key_cols = ["namespace", "scope", "value"]
            # looked up a moment ago, so new unless another process is storing them right now
            inserted = set(copy_new_rows(conn, identities, list(new_rows.values()), key_cols, key_cols))
            lost = [k for k in new_rows if k not in inserted]
            if lost:  # another process stored these identities first: follow its customer
                self._adopt(conn, lost, new_rows, events)

    def _lookup(self, conn: Connection, keys: list[Key]) -> dict[Key, str]:
        out: dict[Key, str] = {}
        if conn.dialect.name == "postgresql":
            # the keys as one JSON parameter (encoded by orjson) instead of thousands of scalars
            # fetched as plain tuples on the raw cursor: thousands of rows per batch
            raw = conn.connection.driver_connection
            assert raw is not None  # a live connection inside the caller's transaction
            with raw.cursor() as cur:
                cur.execute(
                    "SELECT i.namespace, i.scope, i.value, i.customer_id FROM identities i "
                    "JOIN json_array_elements(CAST(%s AS json)) AS k(j) "
                    "ON i.namespace = k.j->>0 AND i.scope = k.j->>1 AND i.value = k.j->>2",
                    (dumps(keys),),
                )
                return {(r[0], r[1], r[2]): r[3] for r in cur.fetchall()}
        # SQLite: per (namespace, scope), ``value IN (...)``, which walks the primary key's index;
        # a row-value ``(namespace, scope, value) IN (...)`` measured a quarter of the ingest time
        by_prefix: dict[tuple[str, str], list[str]] = {}
        for ns, sc, va in keys:
            by_prefix.setdefault((ns, sc), []).append(va)
        c = identities.c
        for (ns, sc), values in by_prefix.items():
            for chunk in _chunks(values, 500):
                q = select(c.value, c.customer_id).where(c.namespace == ns, c.scope == sc, c.value.in_(list(chunk)))
                for value, customer_id in conn.execute(q):
                    out[(ns, sc, value)] = customer_id
        return out

    def _merge(
        self,
        conn: Connection,
        found: set[str],
        known: dict[Key, str],
        new_rows: dict[Key, dict[str, Any]],
        alias: dict[str, str],
        new_customers: list[str],
        now: datetime,
        opted: set[str],
    ) -> str:
        survivor = self._survivor(conn, found, new_customers, now)
        others = sorted(found - {survivor})
        for o in others:
            alias[o] = survivor
        fresh = set(new_customers)
        stored = [o for o in others if o not in fresh]  # customers of this batch have no rows yet
        if stored:
            c = customers.c
            conn.execute(update(identities).where(identities.c.customer_id.in_(stored)).values(customer_id=survivor))
            # the document says whose touchpoint it is too: both follow (readers take either)
            if conn.dialect.name == "postgresql":
                doc = text(
                    "jsonb_set(touchpoints.doc::jsonb, '{customer,customer_id}', to_jsonb(CAST(:survivor AS text)))::json"
                )
            else:
                doc = text("json_set(touchpoints.doc, '$.customer.customer_id', :survivor)")
            conn.execute(
                update(touchpoints)
                .where(touchpoints.c.customer_id.in_(stored))
                .values(customer_id=survivor, doc=doc.bindparams(survivor=survivor))
            )
            # an opt-out of any of them holds for the survivor
            if conn.execute(select(c.id).where(c.id.in_(stored), c.opted_out.is_(true())).limit(1)).first():
                if survivor in fresh:  # not stored yet (a clock that went back): stored opted out
                    opted.add(survivor)
                conn.execute(update(customers).where(c.id == survivor).values(opted_out=True))
            # customers merged into an absorbed one earlier point at the survivor now (no chains)
            conn.execute(update(customers).where(c.merged_into.in_(stored)).values(merged_into=survivor))
            conn.execute(update(customers).where(c.id.in_(stored)).values(merged_into=survivor))
            for hook in self.merges:
                hook(conn, stored, survivor, now)
        for k, v in known.items():
            if v in others:
                known[k] = survivor
        for row in new_rows.values():
            if row["customer_id"] in others:
                row["customer_id"] = survivor
        return survivor

    @staticmethod
    def _survivor(conn: Connection, found: set[str], new_customers: list[str], now: datetime) -> str:
        """The oldest of ``found`` by creation time (customers of this batch: ``now``, in the order
        they were made), ties by id: the same customer survives whichever event merges them."""
        fresh = {c: i for i, c in enumerate(new_customers) if c in found}
        stored = sorted(found - set(fresh))
        created: dict[str, datetime] = {}
        for chunk in _chunks(stored, 500):
            q = select(customers.c.id, customers.c.created_at).where(customers.c.id.in_(list(chunk)))
            created.update((r[0], r[1]) for r in conn.execute(q))
        return min(found, key=lambda c: (created.get(c, now), fresh.get(c, -1), c))

    def _adopt(
        self,
        conn: Connection,
        lost: list[Key],
        new_rows: dict[Key, dict[str, Any]],
        events: Sequence[TouchpointEvent],
    ) -> None:
        winners = self._lookup(conn, lost)
        remap = {new_rows[k]["customer_id"]: winners[k] for k in lost if k in winners}
        if not remap:
            return
        for ours, theirs in remap.items():
            conn.execute(update(identities).where(identities.c.customer_id == ours).values(customer_id=theirs))
            conn.execute(update(customers).where(customers.c.id == ours).values(merged_into=theirs))
        for ev in events:
            if ev.customer.customer_id in remap:
                ev.customer.customer_id = remap[ev.customer.customer_id]
