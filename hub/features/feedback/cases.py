"""Cases: open or join, the state machine with its audit trail, notifications and the SLA sweep.

States::

    new --ack--> acknowledged --resolve--> resolved --close--> closed
     |                                        ^  |                |
     +----------------resolve-----------------+  +----reopen------+--> new (fresh SLA, round + 1)

Every transition writes a ``case_events`` row (who, when, how: system / link / card / cli) in the
same transaction as the change. Every notification is an outbox row whose key is derived from the
case, its round, the step and the destination, so a retried transaction or a second sweeper never
sends the same step twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import Connection, select, update

from hub.console.live import publish
from hub.features.feedback.card_actions import StaffDirectory, card_actor, find_case_value
from hub.features.feedback.config import FeedbackConfig, Severity
from hub.features.feedback.detection import Detector, Verdict
from hub.features.feedback.escalation import sweep as sweep_due_cases
from hub.features.feedback.links import LinkSigner
from hub.features.feedback.recovery import RecoverySurvey
from hub.features.feedback.render import case_summary, order_of, render_message
from hub.features.feedback.routing import CaseRouter, RouteFacts
from hub.features.feedback.schema import OPEN_STATES, case_events, case_topics, case_touchpoints, cases
from hub.features.feedback.sla import add_business_time
from hub.features.feedback.verdicts import store_topics
from hub.model import EventKind, TouchpointEvent
from hub.outbox import enqueue
from hub.privacy import mask_text
from hub.sdk.connector import Clock, utcnow
from hub.store import Store, insert_ignore
from hub.store.locks import lock_customers
from hub.store.schema import touchpoints

if TYPE_CHECKING:
    from hub.ingest import IngestContext

log = logging.getLogger("cxhub.feedback")

CASES_OPENED = Counter("cxhub_cases_opened_total", "Cases opened, by severity", ["severity"])
CASE_NOTIFICATIONS = Counter("cxhub_case_notifications_total", "Case notifications enqueued, by kind", ["kind"])
CASE_TRANSITIONS = Counter("cxhub_case_transitions_total", "Case transitions, by action and channel", ["action", "via"])

_RANK = {"low": 0, "medium": 1, "high": 2}
# action -> (states it applies to, state it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "ack": (("new",), "acknowledged"),
    "resolve": (("new", "acknowledged"), "resolved"),
    "close": (("resolved",), "closed"),
    "reopen": (("resolved", "closed"), "new"),
    # staff say the detector was wrong: the case ends (no escalation for a false alarm, no recovery
    # survey) and the touchpoint becomes a labelled example for the next model (verdicts)
    "not_negative": (("new", "acknowledged"), "resolved"),
}
VIAS = ("system", "link", "card", "cli", "api", "survey", "console")


class CaseNotFound(LookupError):
    """No case with that id."""


@dataclass
class TransitionResult:
    """What a staff action did: ``changed`` False when the case was already past that state."""

    case: dict[str, Any]
    changed: bool
    message: str


class CaseService:
    """Everything that happens to cases; one instance per runtime."""

    def __init__(
        self,
        cfg: FeedbackConfig,
        store: Store,
        detector: Detector,
        signer: LinkSigner,
        *,
        clock: Clock = utcnow,
        destinations: Sequence[str] | None = None,
        recovery: RecoverySurvey | None = None,
    ):
        self.cfg = cfg
        self.store = store
        self.detector = detector
        self.router = CaseRouter(cfg)
        self.signer = signer
        self.clock = clock
        self.destinations = set(destinations) if destinations is not None else None
        self.recovery = recovery

    # ------------------------------------------------------------ ingest hook

    name = "feedback"
    #: works from the events it is given; never reads this batch's touchpoint rows back (IngestHook)
    reads_touchpoints = False

    def __call__(self, ctx: IngestContext, events: Sequence[TouchpointEvent]) -> None:
        """Ingest hook: judge new events, open or join cases, act on card callbacks."""
        if not self.cfg.enabled:
            return
        # one batch through the text model; topics of every judged touchpoint are kept (stats)
        judged = self.detector.judge_many(events)
        verdicts = {id(ev): v for ev, v in zip(events, judged, strict=True)}
        store_topics(ctx.conn, events, judged)
        for ev in events:
            if ev.kind is EventKind.card_action or ev.attributes.get("event") == "template_card_event":
                self._card_action(ctx.conn, ev, ctx.now)
                continue
            if ev.kind is EventKind.survey_response and self.recovery is not None:
                case_id = self.recovery.case_of_response(ctx.conn, ev)
                if case_id is not None:
                    # the answer to a recovery survey says how the case ended; it opens no new case
                    recovered = not verdicts[id(ev)].negative
                    self.set_recovered(case_id, recovered, actor="customer", via="survey", conn=ctx.conn, now=ctx.now)
                    continue
            verdict = verdicts[id(ev)]
            if verdict.negative:
                self.open_or_join(ctx.conn, ev, verdict, ctx.now)

    # ------------------------------------------------------------ open / join

    def _facts(self, ev: TouchpointEvent, severity: str | None, topics: Sequence[str] = ()) -> RouteFacts:
        return RouteFacts(
            brand=ev.org.brand,
            region=ev.org.region,
            district=ev.org.district,
            store=ev.org.store,
            channel=ev.channel,
            categories=ev.categories + list(ev.feedback.topics if ev.feedback else []),
            severity=severity,
            source=ev.source,
            kind=ev.kind.value,
            topics=list(topics),
        )

    def _store_clock(self, store: str | None) -> tuple[str, Any]:
        node = self.router.store_info(store)
        tz = (node.timezone if node else None) or self.cfg.timezone
        hours = (node.business_hours if node else None) or self.cfg.business_hours
        return tz, hours

    def _deadlines(self, severity: str, store: str | None, start: datetime) -> tuple[datetime, datetime]:
        target = self.cfg.sla[severity]  # type: ignore[index]
        tz, hours = self._store_clock(store)
        return (
            add_business_time(start, target.ack, hours, tz),
            add_business_time(start, target.resolve, hours, tz),
        )

    def _warn_at(self, severity: str, ack_due: datetime) -> datetime:
        target = self.cfg.sla[severity]  # type: ignore[index]
        before = target.warn_before or target.ack * 0.2
        return ack_due - timedelta(seconds=before)

    def open_or_join(self, conn: Connection, ev: TouchpointEvent, verdict: Verdict, now: datetime) -> int:
        """Open a case for ``ev``, or add it to the open case of the same customer and store."""
        assert verdict.severity is not None
        existing = conn.execute(
            select(case_touchpoints.c.case_id).where(case_touchpoints.c.touchpoint_id == ev.id)
        ).first()
        if existing is not None:  # replayed touchpoint: it already has its case
            return int(existing[0])
        cid = ev.customer.customer_id
        if cid:
            q = (
                select(cases)
                .where(
                    cases.c.customer_id == cid,
                    cases.c.store.is_(None) if ev.org.store is None else cases.c.store == ev.org.store,
                    cases.c.status.in_(OPEN_STATES),
                    cases.c.opened_at >= now - timedelta(seconds=self.cfg.join_window),
                )
                .order_by(cases.c.opened_at.desc())
                .limit(1)
                .with_for_update()
            )
            row = conn.execute(q).mappings().first()
            if row is not None:
                self._join(conn, dict(row), ev, verdict, now)
                return int(row["id"])
        return self._open(conn, ev, verdict, now)

    def open_case(
        self, conn: Connection, ev: TouchpointEvent, *, severity: str, reasons: Sequence[str], now: datetime
    ) -> int:
        """Open a case for ``ev`` on another feature's judgement (the customers feature: a valuable
        customer at risk of leaving), or join the customer's open case at that store; its id.
        Routing, SLA, escalation and cards are those of any case."""
        if severity not in _RANK:
            raise ValueError(f"severity {severity!r}: one of {', '.join(_RANK)}")
        verdict = Verdict(negative=True, severity=severity, reasons=list(reasons))  # type: ignore[arg-type]
        return self.open_or_join(conn, ev, verdict, now)

    def _open(self, conn: Connection, ev: TouchpointEvent, verdict: Verdict, now: datetime) -> int:
        severity = verdict.severity
        assert severity is not None
        levels, how = self.router.ladder(self._facts(ev, severity, verdict.topic_ids))
        node = self.router.store_info(ev.org.store)
        ack_due, resolve_due = self._deadlines(severity, ev.org.store, now)
        warn_at = self._warn_at(severity, ack_due)
        warned = warn_at <= now
        doc = {
            "summary": case_summary(ev, node.name if node else None, order_of(conn, ev)),
            "reasons": verdict.reasons,
            "keywords": verdict.keywords,
            "sentiment": verdict.sentiment,
            "topics": verdict.topics_doc(),  # detector: what it is about, with polarity and span
            "why": verdict.why,  # detector: the words that made the text negative
            "levels": [{"label": lv.label, "contacts": lv.contacts} for lv in levels],
            "route": how,
        }
        row = (
            conn.execute(
                cases.insert().returning(*cases.c),
                {
                    "status": "new",
                    "severity": severity,
                    "touchpoint_id": ev.id,
                    "source": ev.source,
                    "customer_id": ev.customer.customer_id,
                    "store": ev.org.store,
                    "opened_at": now,
                    "updated_at": now,
                    "ack_due_at": ack_due,
                    "resolve_due_at": resolve_due,
                    "level": 0,
                    "warned": warned,
                    "reminders": 0,
                    "resolve_stage": 0,
                    "round": 0,
                    "next_action_at": ack_due if warned else warn_at,
                    "touchpoints": 1,
                    "doc": doc,
                },
            )
            .mappings()
            .one()
        )
        case = dict(row)
        case_id = case["id"]
        conn.execute(case_touchpoints.insert(), {"touchpoint_id": ev.id, "case_id": case_id, "added_at": now})
        bad = sorted({t.topic for t in verdict.topics if t.polarity == "negative"})
        if bad:
            rows = [{"case_id": case_id, "topic": t[:64], "store": ev.org.store, "opened_at": now} for t in bad]
            conn.execute(case_topics.insert(), rows)
        self.audit(conn, case_id, "opened", "system", "system", now, {"severity": severity, "reasons": verdict.reasons})
        # the console's live pages hear of it in this transaction: the row commits with the case
        publish(conn, now, "cases", store=ev.org.store, ref=str(case_id), status="new", action="opened")
        CASES_OPENED.labels(severity).inc()
        self.notify(conn, case, "open", [0], now)
        return int(case_id)

    def _join(
        self, conn: Connection, case: dict[str, Any], ev: TouchpointEvent, verdict: Verdict, now: datetime
    ) -> None:
        conn.execute(
            insert_ignore(conn, case_touchpoints, ["touchpoint_id"]),
            {"touchpoint_id": ev.id, "case_id": case["id"], "added_at": now},
        )
        values: dict[str, Any] = {"touchpoints": case["touchpoints"] + 1, "updated_at": now}
        raised = verdict.severity is not None and _RANK[verdict.severity] > _RANK[case["severity"]]
        if raised:
            sev: Severity = verdict.severity  # type: ignore[assignment]
            values["severity"] = sev
            doc = dict(case["doc"])
            doc["reasons"] = list(doc.get("reasons", [])) + verdict.reasons
            doc["keywords"] = sorted(set(doc.get("keywords", [])) | set(verdict.keywords))
            values["doc"] = doc
            if case["status"] == "new":
                # a worse repeat tightens the deadline, never loosens it
                ack_due, resolve_due = self._deadlines(sev, case["store"], case["opened_at"])
                values["ack_due_at"] = min(case["ack_due_at"], ack_due)
                values["resolve_due_at"] = min(case["resolve_due_at"], resolve_due)
                if not case["warned"]:
                    values["next_action_at"] = min(case["next_action_at"] or ack_due, self._warn_at(sev, ack_due))
        conn.execute(update(cases).where(cases.c.id == case["id"]).values(**values))
        self.audit(
            conn,
            case["id"],
            "joined",
            "system",
            "system",
            now,
            {"touchpoint_id": ev.id, "severity": verdict.severity, "raised": raised},
        )
        publish(conn, now, "cases", store=case["store"], ref=str(case["id"]), status=case["status"], action="joined")
        if raised:
            fresh = self._row(conn, case["id"])
            self.notify(
                conn, fresh, "update", list(range(fresh["level"] + 1)), now, step=f"update{fresh['touchpoints']}"
            )

    # ------------------------------------------------------------ notifications

    def _links(self, case_id: int, now: datetime) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        exp = now + timedelta(seconds=self.cfg.link_ttl)
        links = {a: self.signer.url(case_id, a, exp) for a in ("view", "ack", "resolve", "not_negative")}
        values: dict[str, dict[str, Any]] = {}
        for a in ("ack", "resolve", "not_negative"):
            token = self.signer.token(case_id, a, exp)
            # "key": the same as one string, for platforms whose buttons carry only a key (WeCom
            # template cards' EventKey)
            values[a] = {"cxhub_case": case_id, "op": a, "t": token, "key": f"cxhub:{case_id}:{a}:{token}"}
        return links, values

    def notify(
        self,
        conn: Connection,
        case: dict[str, Any],
        kind: str,
        level_idx: list[int],
        now: datetime,
        *,
        step: str | None = None,
    ) -> int:
        """Enqueue ``kind`` for the contacts of these ladder levels: one message per destination."""
        levels = case["doc"]["levels"]
        names: list[str] = []
        for i in level_idx:
            if 0 <= i < len(levels):
                names += [n for n in levels[i]["contacts"] if n not in names]
        endpoints = self.router.endpoints(names, now)
        label = levels[max(level_idx)]["label"] if level_idx and max(level_idx) < len(levels) else None
        links, values = self._links(case["id"], now)
        step = step or kind
        sent = 0
        tz, _ = self._store_clock(case["store"])
        for dest, ep in endpoints.items():
            if self.destinations is not None and dest not in self.destinations:
                log.warning("case %s: contact endpoint names unknown destination %r; skipped", case["id"], dest)
                continue
            key = f"case:{case['id']}:r{case['round']}:{step}:{dest}"
            msg = render_message(
                key=key,
                kind=kind,
                case=case,
                now=now,
                tz=tz,
                links=links,
                level_label=label,
                to=ep.to,
                mention=ep.mention,
                card_values=values,
            )
            if enqueue(conn, destination=dest, message=msg, now=now, cause=f"case:{case['id']}"):
                sent += 1
        CASE_NOTIFICATIONS.labels(kind).inc(sent)
        self.audit(
            conn,
            case["id"],
            "notified",
            "system",
            "system",
            now,
            {"kind": kind, "step": step, "levels": level_idx, "destinations": sorted(endpoints), "contacts": names},
        )
        if not endpoints:
            log.warning(
                "case %s: nobody to notify for %s (levels %s); configure feedback.fallback", case["id"], kind, level_idx
            )
        return sent

    def reroute(self, case_id: int, *, actor: str = "system", via: str = "cli") -> dict[str, Any]:
        """Route an open case again with the current rules (after a routing fix, or for a case that
        opened when nobody matched) and notify its new first level."""
        with self.store.begin() as conn:
            case = self._row(conn, case_id, lock=True)
            if case["status"] not in OPEN_STATES:
                return case
            doc = conn.execute(select(touchpoints.c.doc).where(touchpoints.c.id == case["touchpoint_id"])).scalar()
            if doc is None:
                raise CaseNotFound(f"case #{case_id}: its touchpoint {case['touchpoint_id']} is gone")
            ev = TouchpointEvent.model_validate(doc)
            levels, how = self.router.ladder(self._facts(ev, case["severity"]))
            new_doc = {
                **case["doc"],
                "levels": [{"label": lv.label, "contacts": lv.contacts} for lv in levels],
                "route": how,
            }
            n = int(case["doc"].get("reroutes", 0)) + 1
            new_doc["reroutes"] = n
            conn.execute(
                update(cases).where(cases.c.id == case_id).values(doc=new_doc, level=0, updated_at=self.clock())
            )
            now = self.clock()
            self.audit(conn, case_id, "rerouted", actor, via, now, {"route": how})
            fresh = self._row(conn, case_id)
            self.notify(conn, fresh, "open", [0], now, step=f"reroute{n}")
            return fresh

    # ------------------------------------------------------------ state machine

    def _row(self, conn: Connection, case_id: int, *, lock: bool = False) -> dict[str, Any]:
        q = select(cases).where(cases.c.id == case_id)
        if lock:
            q = q.with_for_update()
        row = conn.execute(q).mappings().first()
        if row is None:
            raise CaseNotFound(f"no case #{case_id}")
        return dict(row)

    @staticmethod
    def audit(
        conn: Connection,
        case_id: int,
        action: str,
        actor: str,
        via: str,
        now: datetime,
        detail: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        conn.execute(
            case_events.insert(),
            {
                "case_id": case_id,
                "at": now,
                "action": action,
                "actor": actor[:128],
                "via": via,
                "note": note,
                "detail": detail or {},
            },
        )

    def transition(
        self,
        case_id: int,
        action: str,
        *,
        actor: str,
        via: str,
        note: str | None = None,
        conn: Connection | None = None,
    ) -> TransitionResult:
        """Apply a staff action (ack / resolve / close / reopen) in its own transaction (or ``conn``)."""
        if action not in TRANSITIONS:
            raise ValueError(f"unknown case action {action!r}; one of {sorted(TRANSITIONS)}")
        if via not in VIAS:
            raise ValueError(f"unknown channel {via!r}; one of {VIAS}")
        if conn is None:
            with self.store.begin() as own:
                return self._transition(own, case_id, action, actor, via, note, self.clock())
        return self._transition(conn, case_id, action, actor, via, note, self.clock())

    def _transition(
        self, conn: Connection, case_id: int, action: str, actor: str, via: str, note: str | None, now: datetime
    ) -> TransitionResult:
        if action == "resolve" and self.recovery is not None:
            # a resolve may invite the customer to a recovery survey, which takes the customer's survey
            # lock; ingest takes that lock before it touches a case row, so take it first here too:
            # the same order everywhere, no deadlock between a resolve and an ingest batch
            customer = self._row(conn, case_id).get("customer_id")
            if customer:
                lock_customers(conn, [customer])
        case = self._row(conn, case_id, lock=True)
        allowed, target = TRANSITIONS[action]
        if case["status"] not in allowed:
            return TransitionResult(case, False, f"case #{case_id} is {case['status']}: nothing to {action}")
        values: dict[str, Any] = {"status": target, "updated_at": now}
        if action == "ack":
            values.update(acknowledged_at=now, acknowledged_by=actor)
            values["next_action_at"] = self._resolve_warn_at(case)
        elif action in ("resolve", "not_negative"):
            if case["acknowledged_at"] is None:
                values.update(acknowledged_at=now, acknowledged_by=actor)
            values.update(resolved_at=now, resolved_by=actor, next_action_at=None)
        elif action == "close":
            values.update(closed_at=now, next_action_at=None)
        elif action == "reopen":
            ack_due, resolve_due = self._deadlines(case["severity"], case["store"], now)
            warn_at = self._warn_at(case["severity"], ack_due)
            values.update(
                round=case["round"] + 1,
                level=0,
                warned=warn_at <= now,
                reminders=0,
                resolve_stage=0,
                ack_due_at=ack_due,
                resolve_due_at=resolve_due,
                next_action_at=ack_due if warn_at <= now else warn_at,
                acknowledged_at=None,
                acknowledged_by=None,
                resolved_at=None,
                resolved_by=None,
                closed_at=None,
                recovered=None,
            )
        conn.execute(update(cases).where(cases.c.id == case_id).values(**values))
        self.audit(conn, case_id, _PAST[action], actor, via, now, {"from": case["status"], "to": target}, note)
        publish(conn, now, "cases", store=case["store"], ref=str(case_id), status=target, action=action)
        CASE_TRANSITIONS.labels(action, via).inc()
        if action == "not_negative":
            from hub.features.feedback.verdicts import StaffVerdicts

            StaffVerdicts(self).label_case(conn, case, "not_negative", actor=actor, via=via, now=now, note=note)
        fresh = self._row(conn, case_id)
        if action == "reopen":
            self.notify(conn, fresh, "open", [0], now)
        if action == "resolve" and self.recovery is not None:
            invited = self.recovery.invite(conn, fresh, now)
            if invited is not None:
                self.audit(conn, case_id, "recovery_survey", "system", "system", now, invited)
        return TransitionResult(fresh, True, f"case #{case_id} {_PAST[action]} by {actor} via {via}")

    def _resolve_warn_at(self, case: dict[str, Any]) -> datetime:
        target = self.cfg.sla[case["severity"]]
        return case["resolve_due_at"] - timedelta(seconds=target.resolve * 0.1)

    def set_recovered(
        self, case_id: int, recovered: bool, *, actor: str, via: str, conn: Connection, now: datetime | None = None
    ) -> None:
        """Record whether the customer came back happy (recovery survey answer, or staff)."""
        now = now or self.clock()
        conn.execute(update(cases).where(cases.c.id == case_id).values(recovered=recovered, updated_at=now))
        self.audit(conn, case_id, "recovered" if recovered else "not_recovered", actor, via, now)

    def assign(
        self, case_id: int, assignee: str | None, *, actor: str, via: str, note: str | None = None
    ) -> dict[str, Any]:
        """Give the case to ``assignee`` (a console login; None: to nobody), kept in the case's doc;
        a ``case_events`` row "assign" names who gave it to whom. The caller checks that the
        assignee may act on the case's store."""
        if via not in VIAS:
            raise ValueError(f"unknown channel {via!r}; one of {VIAS}")
        now = self.clock()
        with self.store.begin() as conn:
            case = self._row(conn, case_id, lock=True)
            doc = dict(case["doc"])
            before = doc.get("assignee")
            if assignee:
                doc["assignee"] = assignee
            else:
                doc.pop("assignee", None)
            conn.execute(update(cases).where(cases.c.id == case_id).values(doc=doc, updated_at=now))
            self.audit(conn, case_id, "assign", actor, via, now, {"from": before, "to": assignee}, note)
            publish(conn, now, "cases", store=case["store"], ref=str(case_id), status=case["status"], action="assign")
            return self._row(conn, case_id)

    def add_note(self, case_id: int, text: str, *, actor: str, via: str) -> None:
        """A note of staff on the case's trail (phone numbers in it masked before it is stored)."""
        if via not in VIAS:
            raise ValueError(f"unknown channel {via!r}; one of {VIAS}")
        now = self.clock()
        with self.store.begin() as conn:
            case = self._row(conn, case_id)
            self.audit(conn, case_id, "note", actor, via, now, {}, mask_text(text))
            publish(conn, now, "cases", store=case["store"], ref=str(case_id), status=case["status"], action="note")

    # ------------------------------------------------------------ card callbacks

    def _card_action(self, conn: Connection, ev: TouchpointEvent, now: datetime) -> None:
        value = find_case_value(ev.attributes)
        if value is None:
            return  # a card action of something else (a survey card...)
        try:
            case_id = int(value["cxhub_case"])
            op = str(value.get("op", ""))
            self.signer.verify(case_id, op, str(value.get("t", "")), now)
        except Exception as exc:  # a forged or expired button must not break the batch
            log.warning("card action on %s ignored: %s", ev.source, exc)
            return
        actor = card_actor(ev, StaffDirectory.from_config(self.cfg))  # the name staff know, not an id
        try:
            self._transition(conn, case_id, op, actor, "card", None, now)
        except CaseNotFound:
            log.warning("card action for unknown case #%s from %s ignored", case_id, ev.source)

    # ------------------------------------------------------------ SLA sweep

    def sweep(self, now: datetime | None = None, *, limit: int = 100) -> int:
        """Warn, escalate and remind for every case whose next step is due (see
        :mod:`hub.features.feedback.escalation`). Safe to run on several processes at once."""
        return sweep_due_cases(self, now or self.clock(), limit=limit)

    # ------------------------------------------------------------ reading

    def get(self, case_id: int) -> dict[str, Any]:
        """One case with its touchpoints and audit trail."""
        with self.store.connect() as conn:
            case = self._row(conn, case_id)
            case["events"] = [
                dict(r)
                for r in conn.execute(
                    select(case_events).where(case_events.c.case_id == case_id).order_by(case_events.c.id)
                ).mappings()
            ]
            case["touchpoint_ids"] = [
                r[0]
                for r in conn.execute(
                    select(case_touchpoints.c.touchpoint_id)
                    .where(case_touchpoints.c.case_id == case_id)
                    .order_by(case_touchpoints.c.added_at)
                )
            ]
        return case

    def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Cases, newest first."""
        q = select(cases).order_by(cases.c.id.desc()).limit(limit)
        if status:
            q = q.where(cases.c.status == status)
        with self.store.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


_PAST = {
    "ack": "acknowledged",
    "resolve": "resolved",
    "close": "closed",
    "reopen": "reopened",
    "not_negative": "marked not negative",
}
