"""Survey metrics and invitation listings (``cxhub stats``, ``cxhub invitations``).

- NPS: % of answers 9-10 minus % of answers 0-6 (-100..100), over survey responses with an NPS;
- CSAT: % of answers 4-5 on the 1-5 scale (top-2 box);
- CES: the mean of the 1-7 answers;
- response rate: invitations answered / invitations sent (scheduled or deferred, and not found
  unsendable at send time: an invitation whose link expired before it went out, whose customer
  opted out meanwhile, or whose every channel refused it is counted as ``unsent``, not sent).

Responses come from every source (the hosted page, external survey tools through the webhook);
one that names its invitation is grouped by that invitation's channel and basket categories.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, select

from hub.features.surveys.schema import SENT_DECISIONS, UNSENT_STATUSES, invitations
from hub.privacy import mask_text
from hub.store.schema import touchpoints

GROUPINGS = ("store", "category", "channel")
NONE = "(none)"


def _round(value: Decimal, places: str = "0.1") -> float:
    return float(value.quantize(Decimal(places), rounding=ROUND_HALF_UP))


def nps(scores: list[int]) -> float | None:
    """Net Promoter Score of 0-10 answers: %9-10 minus %0-6."""
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return _round(Decimal(promoters - detractors) * 100 / len(scores))


def csat(scores: list[int]) -> float | None:
    """CSAT top-2 box: % of 1-5 answers that are 4 or 5."""
    if not scores:
        return None
    return _round(Decimal(sum(1 for s in scores if s >= 4)) * 100 / len(scores))


def ces(scores: list[int]) -> float | None:
    """Customer Effort Score: mean of 1-7 answers."""
    if not scores:
        return None
    return _round(Decimal(sum(scores)) / len(scores), "0.01")


class _Group:
    def __init__(self) -> None:
        self.invited = 0
        self.suppressed = 0
        self.deferred = 0
        self.unsent = 0
        self.unsent_reasons: dict[str, int] = defaultdict(int)
        self.responded = 0
        self.responses = 0
        self.nps: list[int] = []
        self.csat: list[int] = []
        self.ces: list[int] = []
        self.reasons: dict[str, int] = defaultdict(int)

    def as_dict(self, group: str) -> dict[str, Any]:
        return {
            "group": group,
            "invited": self.invited,
            "deferred": self.deferred,
            "suppressed": self.suppressed,
            "suppressed_by_reason": dict(sorted(self.reasons.items())),
            "unsent": self.unsent,
            "unsent_by_reason": dict(sorted(self.unsent_reasons.items())),
            "responded": self.responded,
            "responses": self.responses,
            "response_rate": round(self.responded / self.invited, 4) if self.invited else None,
            "nps": nps(self.nps),
            "nps_n": len(self.nps),
            "csat": csat(self.csat),
            "csat_n": len(self.csat),
            "ces": ces(self.ces),
            "ces_n": len(self.ces),
        }


def _keys(by: str | None, store: str | None, channel: str | None, categories: list[str] | None) -> list[str]:
    if by is None:
        return ["all"]
    if by == "store":
        return [store or NONE]
    if by == "channel":
        return [channel or NONE]
    return list(categories or []) or [NONE]


def compute_stats(conn: Connection, *, by: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
    """The metrics, overall (``by=None``) or per store / category / channel, largest group first."""
    if by is not None and by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}, not {by!r}")
    q = select(invitations)
    if since is not None:
        q = q.where(invitations.c.created_at >= since)
    invs = {r["id"]: dict(r) for r in conn.execute(q).mappings()}
    groups: dict[str, _Group] = defaultdict(_Group)
    for row in invs.values():
        for key in _keys(by, row["store"], row["channel"], row["doc"].get("categories")):
            g = groups[key]
            if row["decision"] in SENT_DECISIONS and row["status"] in UNSENT_STATUSES:
                g.unsent += 1
                g.unsent_reasons[row["reason"] or row["status"]] += 1
            elif row["decision"] in SENT_DECISIONS:
                g.invited += 1
                g.deferred += row["decision"] == "deferred"
                g.responded += row["status"] == "responded"
            else:
                g.suppressed += 1
                g.reasons[row["reason"] or "unknown"] += 1
    rq = select(touchpoints.c.doc).where(touchpoints.c.kind == "survey_response")
    if since is not None:
        rq = rq.where(touchpoints.c.occurred_at >= since)
    docs = [r[0] for r in conn.execute(rq)]
    missing = {
        d["attributes"].get("invitation_id")
        for d in docs
        if d["attributes"].get("invitation_id") and d["attributes"]["invitation_id"] not in invs
    }
    if missing:  # answered within the period, invited before it
        more = conn.execute(select(invitations).where(invitations.c.id.in_(sorted(missing)))).mappings()
        invs.update({r["id"]: dict(r) for r in more})
    for d in docs:
        inv: dict[str, Any] | None = invs.get(d["attributes"].get("invitation_id") or "")
        fb = d.get("feedback") or {}
        store = d["org"].get("store") or (inv["store"] if inv else None)
        channel = inv["channel"] if inv else d.get("channel")
        cats = inv["doc"].get("categories") if inv else None
        for key in _keys(by, store, channel, cats):
            g = groups[key]
            g.responses += 1
            if fb.get("nps") is not None:
                g.nps.append(int(fb["nps"]))
            if fb.get("csat") is not None:
                g.csat.append(int(fb["csat"]))
            if fb.get("ces") is not None:
                g.ces.append(int(fb["ces"]))
    out = [g.as_dict(k) for k, g in groups.items()]
    out.sort(key=lambda g: (-(g["invited"] + g["suppressed"] + g["responses"]), str(g["group"])))
    return out or ([_Group().as_dict("all")] if by is None else [])


def list_invitations(
    conn: Connection,
    *,
    now: datetime,
    decision: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Invitations newest first, as plain data safe to print (recipients masked, no tokens)."""
    q = select(invitations).order_by(invitations.c.created_at.desc(), invitations.c.id).limit(limit)
    if decision:
        q = q.where(invitations.c.decision == decision)
    if reason:
        q = q.where(invitations.c.reason == reason)
    if since is not None:
        q = q.where(invitations.c.created_at >= since)
    out = []
    for r in conn.execute(q).mappings():
        doc = r["doc"] or {}
        status = r["status"]
        if status == "pending" and r["expires_at"] is not None and r["expires_at"] <= now:
            status = "expired"
        out.append(
            {
                "id": r["id"],
                "rule": r["rule"],
                "questionnaire": r["questionnaire"],
                "transaction_id": r["transaction_id"],
                "order_id": r["order_id"],
                "customer_id": r["customer_id"],
                "store": r["store"],
                "channel": r["channel"],
                "destination": r["destination"],
                "recipient": doc.get("recipient"),
                "decision": r["decision"],
                "reason": r["reason"],
                "detail": mask_text(r["detail"]) if r["detail"] else None,
                "status": status,
                "occurred_at": r["occurred_at"],
                "created_at": r["created_at"],
                "send_at": r["send_at"],
                "expires_at": r["expires_at"],
                "responded_at": r["responded_at"],
                "blocks": doc.get("blocks"),
                "categories": doc.get("categories"),
                "notes": doc.get("notes"),
            }
        )
    return out
