"""Sending one unit: renew the lease when needed, render (masking, digests), call the platform,
and classify the answer into an outcome to record.

Each unit is sent outside any transaction. A crash between send and record leaves the rows
``sending``; when the lease expires another worker sends them again with the **same idempotency
key** (passed to the platform where it has one). The lease is longer than any single send
(``lease_seconds`` > connector timeout x 2), and is renewed before each send once half of it has
passed.

A throttle answer (the platform's rate limit) is recorded at once: the destination is blocked for
every process until the block ends, and the rows wait for it without using up an attempt.

Features look at their own messages again right before the send (:mod:`hub.outbox.checks`): a
check may defer a row (unsent, no attempt used) or cancel it (``dead`` with the reason), and is
told when one of its rows dies, to record why or write a fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from hub.errors import ConnectorError, PermanentError, RetriableError
from hub.features.delivery import metrics
from hub.features.delivery.claim import DEFAULT_DIGEST_BYTES
from hub.features.delivery.record import retry_outcome
from hub.features.delivery.units import Outcome, PumpResult, Step, Unit
from hub.outbox import leases, outcomes
from hub.outbox.checks import Cancel, Defer, SendCheck, Verdict, check_for
from hub.outbox.leases import Claimed
from hub.sdk.connector import Destination, OutboundMessage
from hub.sdk.policy import Throttled
from hub.sdk.render import mask_message, render_digest

log = logging.getLogger("cxhub.delivery")


def no_checks() -> list[SendCheck]:
    return []


class Sender(Step):
    """Sends units for one worker (``worker_id``) and says what each came to."""

    # settings (store, clock, worker_id, lease, policy, budgets...) come from :class:`Step`

    #: the features' send-time checks (:mod:`hub.outbox.checks`), read at each send
    checks: Callable[[], list[SendCheck]] = staticmethod(no_checks)

    def deliver(self, unit: Unit, claimed_at: datetime, result: PumpResult) -> tuple[Outcome | None, datetime | None]:
        """Send one unit. Returns its outcome to record (None when there is nothing to record: the
        lease was lost, or a throttle answer was recorded at once) and the end of a platform block."""
        if self.clock() - claimed_at > self.lease / 2 and not self._renew(unit):
            log.warning("lease lost on outbox rows %s before sending; another worker has them", unit.ids)
            return None, None
        name = unit.rows[0].destination
        n = len(unit.rows)
        check = check_for(self.checks(), unit.rows[0].key) if n == 1 else None
        if check is not None:
            try:
                verdict = self._before_send(check, unit)
            except Exception as exc:  # the check could not look (the store went away): not now
                log.exception("send-time check of outbox row %s failed; the row is retried", unit.ids)
                outcome = retry_outcome(self.policy, unit, f"send-time check failed: {exc}", None, self.clock())
                result.failed += n
                return outcome, None
            if isinstance(verdict, Defer):
                result.deferred += n
                return None, None
            if isinstance(verdict, Cancel):
                result.dead += n
                return Outcome(unit, "dead", error=f"not sent: {verdict.reason}"), None
        dst = self.resolve(name)
        if unit.batch_key and len(unit.rows) > 1:
            # the membership is committed before the send: a crash after it resends the same digest
            with self.store.begin() as conn:
                leases.remember_digest(conn, unit.ids, unit.batch_key)
            result.digests += 1
        message = self._message(dst, unit)
        result.calls += 1
        retried = sum(1 for r in unit.rows if r.attempts > 1)
        if retried:
            metrics.RETRIES.labels(name).inc(retried)
        started = time.perf_counter()
        try:
            try:
                receipt = dst.send(message)
            finally:
                metrics.SEND_SECONDS.labels(name).observe(time.perf_counter() - started)
        except Throttled as exc:
            result.failed += n
            return None, self._throttled(dst, unit, exc)
        except PermanentError as exc:
            result.dead += n
            self._after_dead(check, unit, str(exc), exc.code)
            return Outcome(unit, "dead", error=str(exc)), None
        except Exception as exc:
            if isinstance(exc, RetriableError):
                error, retry_after = str(exc), exc.retry_after
            elif isinstance(exc, ConnectorError):
                error, retry_after = str(exc), None
            else:  # a connector bug must not stop delivery of everything else
                log.exception("destination %s raised unexpectedly; the message is retried", name)
                error, retry_after = f"internal error: {type(exc).__name__}: {exc}", None
            outcome = retry_outcome(self.policy, unit, error, retry_after, self.clock())
            if outcome.status == "dead":
                result.dead += n
                self._after_dead(check, unit, outcome.error or error, getattr(exc, "code", None))
            else:
                result.failed += n
            return outcome, None
        detail = receipt.message_id or receipt.detail or ""
        if len(unit.rows) > 1:
            detail = f"{detail} (digest {message.key} of {len(unit.rows)})".strip()
        result.sent += n
        return Outcome(unit, "sent", receipt=detail or "ok"), None

    def _before_send(self, check: SendCheck, unit: Unit) -> Verdict:
        """Ask ``check`` about the unit's row; a deferred row goes back in the same transaction."""
        now = self.clock()
        with self.store.begin() as conn:
            verdict = check.before_send(conn, unit.rows[0], now)
            if isinstance(verdict, Defer):
                leases.release(conn, unit.rows, worker_id=self.worker_id, when=verdict.until, now=now)
        if verdict is not None:
            log.info("outbox row %s: %s", unit.ids[0], verdict)
        return verdict

    def _after_dead(self, check: SendCheck | None, unit: Unit, error: str, code: str | int | None) -> None:
        """Tell ``check`` its row died (its own transaction; a failure is logged, never raised)."""
        if check is None:
            return
        try:
            with self.store.begin() as conn:
                check.after_dead(conn, unit.rows[0], error, None if code is None else str(code), self.clock())
        except Exception:
            log.exception("send-time check: handling the dead outbox row %s failed", unit.ids)

    def defer(self, rows: Sequence[Claimed], until: datetime) -> None:
        """Put rows back unsent until ``until`` (their destination throttled earlier in this pump)."""
        with self.store.begin() as conn:
            leases.release(conn, rows, worker_id=self.worker_id, when=until, now=self.clock())

    def _message(self, dst: Destination, unit: Unit) -> OutboundMessage:
        mask = getattr(dst.options, "mask_personal_data", None)
        if mask is None:
            mask = getattr(dst, "staff_facing", False)
        messages = [mask_message(r.message) if mask else r.message for r in unit.rows]
        if len(messages) == 1:
            return messages[0]
        return render_digest(messages, dst.max_body_bytes or DEFAULT_DIGEST_BYTES)

    def _renew(self, unit: Unit) -> bool:
        now = self.clock()
        with self.store.begin() as conn:
            return leases.renew(conn, unit.ids, worker_id=self.worker_id, lease=self.lease, now=now)

    def _throttled(self, dst: Destination, unit: Unit, exc: Throttled) -> datetime:
        now = self.clock()
        block = exc.retry_after
        if block is None:
            block = max((lim.block_seconds for lim in getattr(dst, "rate_limits", ())), default=0.0) or 60.0
        until = now + timedelta(seconds=block)
        with self.store.begin() as conn:
            self.budgets.block(conn, unit.rows[0].destination, until, str(exc), now)
            n = outcomes.record_throttled(
                conn, unit.ids, worker_id=self.worker_id, until=until, error=str(exc), now=now
            )
        metrics.count_outcomes(unit.rows[0].destination, "failed", n)
        log.warning("%s: throttled by the platform; blocked until %s", unit.rows[0].destination, until.isoformat())
        return until
