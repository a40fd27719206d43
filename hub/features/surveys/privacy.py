"""Personal data of the surveys feature: retention and forgetting (see :meth:`hub.feature.Feature.purge`).

Survey answers are kept as anonymous facts: an answered survey's scores (NPS, CSAT, CES, choices)
feed the stats for as long as the deployment wants them, but after ``privacy.retention.survey_answers``
(or when the customer is forgotten) nothing in them points at a person any more:

- the ``survey_response`` touchpoint loses its customer, identities, free text and order id
  (:func:`hub.forget.anonymise_doc`); the scores, the store, the channel and the invitation stay;
- the invitation loses its customer, order id, recipient and words (``detail``); its decision,
  status, channel, categories and scores stay (response rates, NPS per category);
- the survey message in the outbox loses its recipients, link and text (cancelled if not sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from hub.feature import Retention
from hub.features.surveys.schema import invitations
from hub.forget import add, anonymise_doc, scrub_outbox
from hub.store.schema import outbox, touchpoints

#: what an anonymised invitation's document keeps (the stats' groupings and the questions asked)
_DOC_KEEPS = ("categories", "blocks", "questions", "locale", "brand", "store_name")


def _anonymise_responses(conn: Connection, ids: Sequence[str]) -> int:
    t = touchpoints.c
    n = 0
    for tid, doc in conn.execute(select(t.id, t.doc).where(t.id.in_(list(ids)))).all():
        conn.execute(update(touchpoints).where(t.id == tid).values(customer_id=None, doc=anonymise_doc(doc)))
        n += 1
    return n


def _anonymise_invitations(conn: Connection, rows: Sequence[Any], now: datetime) -> dict[str, int]:
    counts: dict[str, int] = {}
    keys = [r.outbox_key for r in rows if r.outbox_key]
    for r in rows:
        doc = {k: v for k, v in (r.doc or {}).items() if k in _DOC_KEEPS}
        conn.execute(
            update(invitations)
            .where(invitations.c.id == r.id)
            .values(customer_id=None, order_id=None, detail=None, doc=doc)
        )
    add(counts, {"survey_invitations.anonymised": len(rows)})
    if keys:
        add(counts, scrub_outbox(conn, outbox.c.key.in_(keys), now))
    return counts


def purge(conn: Connection, now: datetime, retention: Retention) -> dict[str, int]:
    """One batch of survey answers and invitations older than ``survey_answers``'s retention,
    anonymised (they stay for the scores)."""
    cutoff = retention.cutoff("survey_answers")
    if cutoff is None:
        return {}
    t, i = touchpoints.c, invitations.c
    counts: dict[str, int] = {}
    ids = conn.execute(
        select(t.id)
        .where(t.kind == "survey_response", t.occurred_at < cutoff, t.customer_id.is_not(None))
        .limit(retention.batch)
    ).scalars()
    add(counts, {"survey_answers.touchpoints.anonymised": _anonymise_responses(conn, list(ids))})
    rows = conn.execute(
        select(i.id, i.doc, i.outbox_key)
        .where(i.created_at < cutoff, i.customer_id.is_not(None))
        .limit(retention.batch)
    ).all()
    if rows:
        for key, n in _anonymise_invitations(conn, rows, now).items():
            add(counts, {f"survey_answers.{key}": n})
    return counts


def forget(conn: Connection, customer_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """The customers' survey answers and invitations anonymised, their survey messages scrubbed."""
    t, i = touchpoints.c, invitations.c
    ids = list(customer_ids)
    counts: dict[str, int] = {}
    answers = conn.execute(select(t.id).where(t.customer_id.in_(ids), t.kind == "survey_response")).scalars()
    add(counts, {"touchpoints.anonymised": _anonymise_responses(conn, list(answers))})
    rows = conn.execute(select(i.id, i.doc, i.outbox_key).where(i.customer_id.in_(ids))).all()
    if rows:
        add(counts, _anonymise_invitations(conn, rows, now))
    return counts
