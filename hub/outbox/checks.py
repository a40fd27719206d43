"""Send-time checks: a feature looks at its own messages again right before they are sent.

A message may wait in the outbox for a long time (a delay, a backlog, an outage, retries); what
was true when it was written may no longer be. A feature publishes a :class:`SendCheck` (as the
``send_check`` attribute of its public interface, ``runtime.features[name]``) for the outbox keys
that start with its ``prefix``. The delivery worker then, for each such row:

- **before the send** calls :meth:`SendCheck.before_send` in a transaction of its own: ``None``
  sends as planned; :class:`Defer` puts the row back, unsent and without using up an attempt,
  until a later time; :class:`Cancel` makes the row ``dead`` with the reason, unsent;
- **when the row dies** (a permanent refusal, or its attempts used up) calls
  :meth:`SendCheck.after_dead` in a transaction of its own, so the feature can record why, or
  write a fallback message in its place.

Rows of other keys cost nothing. Digests (several rows in one call) are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from hub.outbox.leases import Claimed


@dataclass(frozen=True)
class Defer:
    """Not now: send it at ``until`` (``reason`` goes to the row's ``last_error`` and the logs)."""

    until: datetime
    reason: str


@dataclass(frozen=True)
class Cancel:
    """Never: the row ends ``dead`` with ``reason``, unsent."""

    reason: str


Verdict = Defer | Cancel | None


class SendCheck(Protocol):
    """What a feature checks right before its messages go out (see the module docstring)."""

    #: outbox keys this check looks at (``survey:``)
    prefix: str

    def before_send(self, conn: Connection, row: Claimed, now: datetime) -> Verdict:
        """Whether ``row`` may be sent now."""
        ...

    def after_dead(self, conn: Connection, row: Claimed, error: str, code: str | None, now: datetime) -> None:
        """``row`` died unsent: ``error`` says why, ``code`` is the platform's code when there is one."""
        ...


def check_for(checks: tuple[SendCheck, ...] | list[SendCheck], key: str) -> SendCheck | None:
    """The check whose prefix ``key`` starts with, if any."""
    for check in checks:
        if key.startswith(check.prefix):
            return check
    return None
