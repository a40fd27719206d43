"""Retention per data class (``privacy.retention``; docs/privacy.md): what is older than its class's
retention is deleted or anonymised, in bounded batches, by the hourly ``privacy-retention`` job of
``cxhub run`` (the leader) and by ``cxhub privacy purge [--dry-run]``.

The core's classes:

- ``raw_payloads``: ``inbox.payload`` cleared (the inbox row stays: it is the dedup key);
- ``touchpoints``: touchpoints deleted by ``occurred_at`` (survey answers excepted: their class is
  ``survey_answers``, which the surveys feature anonymises and keeps for the scores);
- ``identities``: customers created and last given a new identity before the cutoff, with no
  touchpoint left, are forgotten (:func:`hub.forget.forget_rows`: identities, customer, every
  feature's rows of theirs);
- ``audit``: ``console_audit`` rows deleted (the records of forgets and purges, ``privacy.*``, stay);
- ``quarantine``: quarantined records deleted (``store.quarantine_retention_days`` when the class is
  not set; the ``quarantine-retention`` job does it every hour, this module for the CLI's report).

Each installed feature purges its own rows of these classes (and its own classes) through
:meth:`hub.feature.Feature.purge`. Every run leaves a log line and, when it took anything, one
``console_audit`` row (``privacy.purge``) with the counts per class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, exists, null, select, tuple_, update

from hub.feature import Retention
from hub.forget import audit_row, console_audit, expand, forget_rows, holds_json, runtime_features, transaction
from hub.model import EventKind
from hub.privacy import Vault
from hub.store.schema import customers, identities, inbox, quarantine, touchpoints

if TYPE_CHECKING:
    from hub.config import Config
    from hub.feature import Feature
    from hub.runtime import Runtime

log = logging.getLogger("cxhub")

#: every data class with a retention, in the order a run takes them
CLASSES = ("raw_payloads", "touchpoints", "survey_answers", "identities", "audit", "quarantine")


def retention_seconds(config: Config) -> dict[str, float | None]:
    """Each class's retention in seconds (None: forever), the deprecated
    ``store.quarantine_retention_days`` standing in for a ``quarantine`` not given."""
    r = config.raw.privacy.retention
    out: dict[str, float | None] = {name: getattr(r, name) for name in CLASSES}
    if "quarantine" not in r.model_fields_set:  # not given (``forever`` is given: kept forever)
        out["quarantine"] = config.raw.store.quarantine_retention_days * 86400.0
    return out


def quarantine_days(config: Config) -> float | None:
    """Days a quarantined record is kept (None: forever)."""
    seconds = retention_seconds(config)["quarantine"]
    return None if seconds is None else seconds / 86400


def describe(seconds: float | None) -> str:
    """``31536000`` -> ``365d``; None -> ``forever``."""
    if seconds is None:
        return "forever"
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return f"{int(seconds // 3600)}h"


@dataclass
class PurgeReport:
    """What a purge deleted or anonymised (or, with ``dry_run``, would): rows per class and table."""

    at: datetime
    dry_run: bool
    retention: dict[str, str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: classes whose batches ran out before their rows did (the next run goes on)
    unfinished: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def per_class(self) -> dict[str, int]:
        return {cls: sum(c.values()) for cls, c in self.counts.items()}

    def add(self, keyed: dict[str, int], default_class: str) -> None:
        """Add counts keyed ``"<class>.<table>.<action>"`` (or ``"<table>.<action>"`` of ``default_class``)."""
        for key, n in keyed.items():
            if not n:
                continue
            cls, _, rest = key.partition(".")
            if cls not in CLASSES or rest.count(".") != 1:  # "<table>.<action>" of the default class
                cls, rest = default_class, key
            bucket = self.counts.setdefault(cls, {})
            bucket[rest] = bucket.get(rest, 0) + int(n)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "dry_run": self.dry_run,
            "retention": self.retention,
            "counts": {k: dict(sorted(v.items())) for k, v in sorted(self.counts.items())},
            "total": self.total,
            "unfinished": self.unfinished,
        }

    def summary(self) -> str:
        """One line for the log: the counts per class."""
        parts = [f"{cls} {n}" for cls, n in sorted(self.per_class().items())]
        return ", ".join(parts) if parts else "nothing"


# ---------------------------------------------------------------- the core's classes, one batch each


def _raw_payloads(conn: Connection, cutoff: datetime, batch: int) -> dict[str, int]:
    i = inbox.c
    keys = conn.execute(
        select(i.source, i.external_id).where(i.received_at < cutoff, holds_json(i.payload)).limit(batch)
    ).all()
    if not keys:
        return {}
    n = conn.execute(
        update(inbox).where(tuple_(i.source, i.external_id).in_([tuple(k) for k in keys])).values(payload=null())
    ).rowcount
    return {"inbox.payload_cleared": n}


#: touchpoint kinds the ``touchpoints`` class deletes (survey answers are ``survey_answers``'s)
_DELETED_KINDS = tuple(k.value for k in EventKind if k is not EventKind.survey_response)


def _touchpoints(conn: Connection, cutoff: datetime, batch: int) -> dict[str, int]:
    t = touchpoints.c
    ids: list[str] = []
    for kind in _DELETED_KINDS:  # per kind: each query walks ix_touchpoints_kind_occurred
        if len(ids) >= batch:
            break
        q = select(t.id).where(t.kind == kind, t.occurred_at < cutoff).limit(batch - len(ids))
        ids += conn.execute(q).scalars().all()
    if not ids:
        return {}
    return {"touchpoints.deleted": conn.execute(delete(touchpoints).where(t.id.in_(ids))).rowcount}


def _stale_customers(conn: Connection, cutoff: datetime, batch: int) -> list[str]:
    c, t, i = customers.c, touchpoints.c, identities.c
    q = (
        select(c.id)
        .where(
            c.merged_into.is_(None),
            c.created_at < cutoff,
            ~exists().where(t.customer_id == c.id),
            ~exists().where(i.customer_id == c.id, i.first_seen >= cutoff),
        )
        .limit(batch)
    )
    return list(conn.execute(q).scalars())


def _audit(conn: Connection, cutoff: datetime, batch: int) -> dict[str, int]:
    a = console_audit.c
    ids = conn.execute(
        select(a.id).where(a.at < cutoff, a.action.not_like("privacy.%")).order_by(a.at).limit(batch)
    ).scalars()
    found = list(ids)
    if not found:
        return {}
    return {"console_audit.deleted": conn.execute(delete(console_audit).where(a.id.in_(found))).rowcount}


def _quarantine(conn: Connection, cutoff: datetime, batch: int) -> dict[str, int]:
    q = quarantine.c
    ids = list(conn.execute(select(q.id).where(q.created_at < cutoff).limit(batch)).scalars())
    if not ids:
        return {}
    return {"quarantine.deleted": conn.execute(delete(quarantine).where(q.id.in_(ids))).rowcount}


# ---------------------------------------------------------------- the run


def purge(
    rt: Runtime,
    *,
    dry_run: bool = False,
    classes: Collection[str] = CLASSES,
    actor: str = "system",
    features: Sequence[Feature] | None = None,
) -> PurgeReport:
    """Delete or anonymise what is older than its class's retention, in batches of
    ``privacy.batch_size`` (each batch one transaction; at most ``privacy.max_batches`` per class
    and run). ``dry_run``: the same work in one transaction rolled back, so the counts are exact
    and nothing changes. Leaves a log line and (when it took anything, and not a dry run) one
    ``console_audit`` row ``privacy.purge``."""
    cfg = rt.config.raw.privacy
    now = rt.clock()
    seconds = retention_seconds(rt.config)
    cutoffs = {
        name: (None if s is None or name not in classes else now - timedelta(seconds=s)) for name, s in seconds.items()
    }
    report = PurgeReport(now, dry_run, {name: describe(seconds[name]) for name in CLASSES if name in classes})
    feats = runtime_features(rt) if features is None else list(features)
    vault = Vault(rt.config.secret_key)
    with transaction(rt.store, dry_run=True) if dry_run else _nothing() as shared:

        def batches(name: str, step: Callable[[Connection], dict[str, int]], default_class: str) -> None:
            for _ in range(cfg.max_batches):
                if shared is not None:
                    got = step(shared)
                else:
                    with rt.store.begin() as conn:
                        got = step(conn)
                if not any(got.values()):
                    return
                report.add(got, default_class)
            report.unfinished.append(name)

        core: list[tuple[str, Callable[[Connection, datetime, int], dict[str, int]]]] = [
            ("raw_payloads", _raw_payloads),
            ("touchpoints", _touchpoints),
            ("audit", _audit),
            ("quarantine", _quarantine),
        ]
        for name, func in core:
            cutoff = cutoffs[name]
            if cutoff is not None:
                batches(name, lambda conn, f=func, c=cutoff: f(conn, c, cfg.batch_size), name)  # type: ignore[misc]
        limits = Retention(cutoffs, cfg.batch_size)
        for feature in feats:
            batches(f"feature {feature.name}", lambda conn, f=feature: f.purge(conn, now, limits), "touchpoints")  # type: ignore[misc]
        # identities last: the touchpoints' purge may have left customers with none
        id_cutoff = cutoffs["identities"]
        if id_cutoff is not None:

            def stale(conn: Connection, cutoff: datetime = id_cutoff) -> dict[str, int]:
                ids = expand(conn, _stale_customers(conn, cutoff, cfg.batch_size))
                return forget_rows(conn, vault, ids, now, feats, reference="retention")

            batches("identities", stale, "identities")
        if not dry_run and report.total:
            with rt.store.begin() as conn:
                detail = {"counts": report.as_dict()["counts"], "retention": report.retention}
                audit_row(conn, now, actor, "privacy.purge", "retention", detail)
    if report.total:
        log.info("privacy: retention %s: %s", "would take" if dry_run else "took", report.summary())
    for name in report.unfinished:
        log.info("privacy: retention of %s goes on at the next run (privacy.max_batches spent)", name)
    return report


class _nothing:
    """A context manager of None: batches open their own transactions."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def purge_hourly(rt: Runtime) -> int:
    """The ``privacy-retention`` job of ``cxhub run`` (hourly, on the leader): every class's
    retention but the quarantine's (the ``quarantine-retention`` job's); returns the rows taken."""
    return purge(rt, classes=tuple(c for c in CLASSES if c != "quarantine")).total
