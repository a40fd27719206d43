"""When two customers merge, their cases follow the survivor.

The surveys feature skips customers with an open case, and repeat complaints join the customer's
open case at the same store: both look cases up by customer. Every moved case gets an audit entry
(``customer_merged``), so staff can see why its customer id changed. Registered as the feature's
``merge`` (see :meth:`hub.feature.Feature.on_merge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select, update

from hub.features.feedback.schema import case_events, cases


def on_merge(conn: Connection, absorbed: Sequence[str], survivor: str, now: datetime) -> None:
    """Move the cases of ``absorbed`` to ``survivor`` (with an audit entry each), inside the merge's
    transaction."""
    moved = conn.execute(select(cases.c.id, cases.c.customer_id).where(cases.c.customer_id.in_(list(absorbed)))).all()
    if not moved:
        return
    conn.execute(update(cases).where(cases.c.customer_id.in_(list(absorbed))).values(customer_id=survivor))
    conn.execute(
        case_events.insert(),
        [
            {
                "case_id": case_id,
                "at": now,
                "action": "customer_merged",
                "actor": "system",
                "via": "system",
                "note": None,
                "detail": {"from": old, "to": survivor},
            }
            for case_id, old in moved
        ],
    )
