"""The SLA sweep: warn before the acknowledge deadline, climb the escalation ladder, remind at the
top, and warn / breach on the resolve deadline. Each step is one notification per destination,
keyed by the step, so two processes sweeping at once never send a step twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from hub.features.feedback.schema import OPEN_STATES, cases

if TYPE_CHECKING:
    from hub.features.feedback.cases import CaseService


def sweep(service: CaseService, now: datetime, *, limit: int = 100) -> int:
    """Warn, escalate and remind for every case whose next step is due. Safe to run on several
    processes at once (rows are claimed with SKIP LOCKED; message keys are per step)."""
    done = 0
    while True:
        with service.store.begin() as conn:
            q = (
                select(cases)
                .where(cases.c.status.in_(OPEN_STATES), cases.c.next_action_at <= now)
                .order_by(cases.c.next_action_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = [dict(r) for r in conn.execute(q).mappings()]
            for case in rows:
                _step(service, conn, case, now)
        done += len(rows)
        if len(rows) < limit:
            return done


def _step(service: CaseService, conn: Connection, case: dict[str, Any], now: datetime) -> None:
    target = service.cfg.sla[case["severity"]]
    top = len(case["doc"]["levels"]) - 1
    due: datetime = case["next_action_at"]
    values: dict[str, Any] = {"updated_at": now}

    def later(seconds: float) -> datetime:
        # scheduled from the planned time (no drift), but never in the past: no bursts after downtime
        nxt = due + timedelta(seconds=seconds)
        return nxt if nxt > now else now + timedelta(seconds=seconds)

    if case["status"] == "new":
        if not case["warned"] and now < case["ack_due_at"]:
            service.notify(conn, case, "warn", list(range(case["level"] + 1)), now)
            service.audit(conn, case["id"], "warned", "system", "system", now)
            values.update(warned=True, next_action_at=case["ack_due_at"])
        elif case["level"] < top:
            level = case["level"] + 1
            values.update(warned=True, level=level)
            case = {**case, "level": level}
            service.notify(conn, case, "escalate", list(range(level + 1)), now, step=f"esc{level}")
            service.audit(conn, case["id"], "escalated", "system", "system", now, {"level": level})
            every = target.escalate_every or target.ack
            values["next_action_at"] = later(every if level < top else service.cfg.remind_every)
        elif case["reminders"] < service.cfg.max_reminders:
            n = case["reminders"] + 1
            values.update(warned=True, reminders=n)
            service.notify(conn, case, "remind", list(range(top + 1)), now, step=f"remind{n}")
            service.audit(conn, case["id"], "reminded", "system", "system", now, {"reminder": n})
            values["next_action_at"] = later(service.cfg.remind_every) if n < service.cfg.max_reminders else None
        else:
            values["next_action_at"] = None
    else:  # acknowledged: the resolve deadline
        upto = list(range(case["level"] + 1))
        if case["resolve_stage"] == 0 and now < case["resolve_due_at"]:
            service.notify(conn, case, "resolve_warn", upto, now, step="rwarn")
            values.update(resolve_stage=1, next_action_at=case["resolve_due_at"])
        elif case["resolve_stage"] < 2:
            level = min(case["level"] + 1, top)
            values.update(resolve_stage=2, level=level, next_action_at=None)
            case = {**case, "level": level}
            service.notify(conn, case, "resolve_breach", list(range(level + 1)), now, step="rbreach")
            service.audit(conn, case["id"], "resolve_breached", "system", "system", now, {"level": level})
        else:
            values["next_action_at"] = None
    conn.execute(update(cases).where(cases.c.id == case["id"]).values(**values))
