"""The durable outbox: every message cxhub sends is a row written in the transaction of its cause.

``enqueue`` is called inside that transaction (an ingest hook, a case transition); the key is the
idempotency key derived from the cause, so a replay never enqueues the same message twice.

Row life cycle (the workers in :mod:`hub.features.delivery` move rows along it)::

    pending --claim--> sending --ok--> sent
       ^                  |---retriable--> failed --(next_attempt_at)--> claimed again
       |                  |---permanent / attempts exhausted--> dead
       +---- cxhub outbox retry (failed / dead) ----+

A ``sending`` row whose worker died is claimed again once its lease (``locked_until``) expires.

Every statement on the outbox and on the tables that serve it is in this package, so the life
cycle above is enforced in one place:

- :mod:`hub.outbox.messages`: a message's stored form, and ``enqueue`` (any feature may call it);
- :mod:`hub.outbox.leases`: claiming due rows, digest membership, putting rows back, renewing;
- :mod:`hub.outbox.outcomes`: writing back what a send came to;
- :mod:`hub.outbox.rates`: the shared rate budgets (send log, platform blocks);
- :mod:`hub.outbox.admin`: listing, counts, backlog, and ``cxhub outbox retry``;
- :mod:`hub.outbox.tables`: the tables besides ``outbox`` itself (which is in :mod:`hub.store.schema`).

Only the delivery feature claims and records; it decides what to send, when and how, and calls
these functions for every read and write.
"""

from __future__ import annotations

from hub.outbox.admin import counts, list_rows, retry
from hub.outbox.messages import STATUSES, enqueue, enqueue_many, message_from_dict, message_to_dict, pending_row

__all__ = [
    "STATUSES",
    "counts",
    "enqueue",
    "enqueue_many",
    "list_rows",
    "message_from_dict",
    "message_to_dict",
    "pending_row",
    "retry",
]
