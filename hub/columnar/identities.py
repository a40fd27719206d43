"""Set-based identity resolution for a columnar batch, with the row path's results.

One lookup of the batch's distinct identities; then one pass over the events assigns each the
customer its identities point at, or a new customer per group of events whose identities are all
new (as the row path's resolver does, event after event); new customers and identities are written
with ``COPY``. A batch in which an event's identities point at two customers (a merge), or whose
new identities another process stored meanwhile, is left to the row path's resolver
(:class:`hub.identity.IdentityResolver`), which moves rows and runs the merge hooks: this returns
None and writes nothing.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection

from hub.columnar.vector import const
from hub.identity import IdentityResolver, Key
from hub.model import uuid_text
from hub.store.schema import customers, identities


class _Merge(Exception):
    """The batch merges customers (or raced another writer): the row path's resolver decides."""


IdentityColumns = list[tuple[str, list[str | None], list[str | None]]]


def event_keys(columns: IdentityColumns) -> list[list[Key]]:
    """Each event's identity keys, from per-namespace columns of values and scopes (None: none)."""
    n = len(columns[0][1]) if columns else 0
    per_event: list[list[Key]] = [[] for _ in range(n)]
    for ns, values, scopes in columns:
        for keys, v, sc in zip(per_event, values, scopes, strict=True):
            if v is not None:
                keys.append((ns, sc or "", v))
    return per_event


def resolve_columns(
    conn: Connection,
    resolver: IdentityResolver,
    columns: IdentityColumns,
    contacts: dict[Key, str],
    now: datetime,
    write: Any,
) -> list[str | None] | None:
    """The customer of each event (None: an event without identities), or None when the row
    path's resolver must take the batch. ``columns``: per namespace, each event's value (hashed
    for sensitive namespaces; None: none) and scope (None: none). ``write(conn, table, frame)``:
    the COPY writer."""
    per_event = event_keys(columns)
    n = len(per_event)
    wanted = {k for keys in per_event for k in keys}
    if not wanted:
        return [None] * n
    known = resolver._lookup(conn, list(wanted))
    new_customers: list[str] = []
    new_keys: dict[Key, str] = {}
    out: list[str | None] = []
    get = known.get
    for keys in per_event:
        cid = None
        for k in keys:
            c = get(k)
            if c is not None:
                if cid is None:
                    cid = c
                elif c != cid:
                    return None  # a merge: the row path moves the rows and runs the merge hooks
        if cid is None and keys:
            cid = uuid_text(os.urandom(16).hex(), 4)
            new_customers.append(cid)
        if cid is not None:
            for k in keys:
                if k not in known:
                    known[k] = cid
                    new_keys[k] = cid
        out.append(cid)
    vault = resolver.vault
    try:
        with conn.begin_nested():
            if new_customers:
                write(
                    conn,
                    customers,
                    pl.DataFrame(
                        {
                            "id": new_customers,
                            "created_at": const(now, len(new_customers)),
                            "opted_out": const(False, len(new_customers)),
                        }
                    ),
                )
            if new_keys:
                keys = sorted(new_keys)  # one order for every writer: two inserting the same keys never deadlock
                write(
                    conn,
                    identities,
                    pl.DataFrame(
                        {
                            "namespace": [k[0] for k in keys],
                            "scope": [k[1] for k in keys],
                            "value": [k[2] for k in keys],
                            "customer_id": [new_keys[k] for k in keys],
                            "contact": [vault.encrypt(k[0], contacts[k]) if k in contacts else None for k in keys],
                            "first_seen": const(now, len(keys)),
                        },
                        schema_overrides={"contact": pl.String},
                    ),
                )
    except _Merge:
        return None
    except Exception as exc:  # another process stored one of these identities first
        if not _unique_violation(exc):
            raise
        return None
    return out


def _unique_violation(exc: BaseException) -> bool:
    from sqlalchemy.exc import IntegrityError

    if isinstance(exc, IntegrityError):
        return True
    try:
        from psycopg.errors import UniqueViolation
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, UniqueViolation) or isinstance(getattr(exc, "orig", None), UniqueViolation)
