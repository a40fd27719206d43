"""When two customers merge, their survey history follows the survivor.

Caps count a customer's invitations, sampling and opt-outs are per customer: an invitation left on
the absorbed id would let the merged customer be asked again within a cap window. Registered as the
feature's ``merge`` (see :meth:`hub.feature.Feature.on_merge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, update

from hub.features.surveys.schema import invitations


def on_merge(conn: Connection, absorbed: Sequence[str], survivor: str, now: datetime) -> None:
    """Move the invitations (every decision: sent, deferred, suppressed, answered) of ``absorbed``
    to ``survivor``, inside the merge's transaction."""
    conn.execute(update(invitations).where(invitations.c.customer_id.in_(list(absorbed))).values(customer_id=survivor))
