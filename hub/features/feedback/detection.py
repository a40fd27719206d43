"""Is a touchpoint negative, how bad is it, what is it about, and why?

Signals, each recorded in the verdict's ``reasons`` (shown on the case):

- scores on normalised scales: rating (``Feedback.rating5``) <= 2, NPS <= 6, CSAT <= 2, CES >= 5;
  a bad score is negative whatever the text says (1 star with 好评 text is still a case);
- text: the probability that it is negative, from a
  :class:`~hub.features.feedback.sentiment.SentimentAnalyzer` (the feedback model by default; a
  sentiment the source already supplied in ``feedback.sentiment`` is used as is), against the
  threshold of the touchpoint's source or channel. The text decides only when no score does: when
  the customer's own score is good (5 stars with 不错但是配送慢) the touchpoint is not a case, its
  topics still carry the complaint (配送 -);
- the question the text answers (``attributes.question``): answers to 哪里需要改进？ name a fault
  even from a happy customer, so the bar is raised (``feedback.sentiment.questions``), and an answer
  of nothing (没有 / 无) is never negative;
- alarm keywords (食物中毒, 吃出虫子, 12315...), matched as words and not under negation
  (:mod:`~hub.features.feedback.keywords`): always a case, always high severity.

Severity: high = alarm keyword or a very bad score (``feedback.high``: 1 star, NPS <= 3...);
medium = a negative score; low = negative text alone.

Every verdict has ``topics`` (:mod:`~hub.features.feedback.topics`) and, when the text was
negative, a ``why`` line naming the words that decided. Odd input (empty, 100 kB, emoji only, no
Chinese, lone surrogates, HTML) gets a verdict with a ``note``, never an exception.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.features.feedback.config import FeedbackConfig, Severity
from hub.features.feedback.keywords import AlarmKeywords
from hub.features.feedback.sentiment import ModelSentiment, SentimentAnalyzer
from hub.features.feedback.textmodel import prepare_text as prepare
from hub.features.feedback.topics import TopicTag, TopicTagger, load_taxonomy, load_word_trust
from hub.model import Feedback, TouchpointEvent
from hub.privacy import mask_text

log = logging.getLogger("cxhub.feedback")

#: an answer that names nothing (to 哪里需要改进？): never negative
_NOTHING = re.compile(
    r"^(没有|没|无|暂无|暂时没有|没什么|没啥|没有了|都挺好|都很好|挺好的?|很好|不用|no|none|nothing)[。.!！~～\s]*$"
)


@dataclass
class Verdict:
    """What detection found about one touchpoint."""

    negative: bool
    severity: Severity | None = None
    reasons: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    sentiment: float | None = None  # probability positive, 0..1
    probability: float | None = None  # probability the text is negative (after the question prior)
    topics: list[TopicTag] = field(default_factory=list)
    why: str | None = None  # the words that made the text negative: 「太慢」、「凉了」
    note: str | None = None  # why the text was not judged, or what was cleaned from it

    @property
    def topic_ids(self) -> list[str]:
        return [t.topic for t in self.topics]

    def topics_doc(self) -> list[dict[str, Any]]:
        return [t.as_dict() for t in self.topics]


def _score_signals(fb: Feedback, cfg: FeedbackConfig) -> tuple[list[str], bool]:
    """Negative-score reasons, and whether one of them is bad enough for high severity."""
    t, h = cfg.thresholds, cfg.high
    reasons: list[str] = []
    high = False
    r5 = fb.rating5
    if r5 is not None and float(r5) <= t.rating5_max:
        reasons.append(f"rating {fb.rating}/{fb.rating_scale} <= {t.rating5_max:g}/5")
        high |= float(r5) <= h.rating5_max
    if fb.nps is not None and fb.nps <= t.nps_max:
        reasons.append(f"NPS {fb.nps} <= {t.nps_max}")
        high |= fb.nps <= h.nps_max
    if fb.csat is not None and fb.csat <= t.csat_max:
        reasons.append(f"CSAT {fb.csat} <= {t.csat_max}")
        high |= fb.csat <= h.csat_max
    if fb.ces is not None and fb.ces >= t.ces_min:
        reasons.append(f"CES {fb.ces} >= {t.ces_min}")
        high |= fb.ces >= h.ces_min
    return reasons, high


def _good(fb: Feedback) -> bool:
    """The customer's own score says it went well: the text model does not overrule them
    ("耳机不错，就是排队有点久" with 4 stars is not a case)."""
    r5 = fb.rating5
    return (
        (r5 is not None and r5 >= 4) or (fb.nps is not None and fb.nps >= 9) or (fb.csat is not None and fb.csat >= 4)
    )


def _shift(p: float, by: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return 1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) + by)))


@dataclass
class _Pending:
    event: TouchpointEvent
    text: str  # cleaned
    note: str | None
    judge_text: bool
    question: str | None


class Detector:
    """Applies the ``feedback`` rules to touchpoints, one at a time or in batches."""

    def __init__(self, cfg: FeedbackConfig, analyzer: SentimentAnalyzer, *, config_dir: Path | None = None):
        self.cfg = cfg
        self.analyzer = analyzer
        self._kinds = set(cfg.kinds)
        self._sentiment_kinds = set(cfg.sentiment.kinds)
        self.keywords = AlarmKeywords(cfg.alarm_keywords)
        self._batch = callable(getattr(analyzer, "negative_probabilities", None))
        self.tagger: TopicTagger | None = None
        if cfg.topics.enabled:
            path = Path(cfg.topics.taxonomy) if cfg.topics.taxonomy else None
            if path is not None and not path.is_absolute() and config_dir is not None:
                path = config_dir / path
            # topic polarity scores every clause: with an engine that has no batch API, the shipped
            # model does it (a clause per call of snownlp would cost ~10 ms each)
            clauses = self._negative_probabilities if self._batch else ModelSentiment().negative_probabilities
            # the topic words staff rejected, learned with the model version in use (topics.json)
            trust = load_word_trust(getattr(analyzer, "folder", None))
            self.tagger = TopicTagger(
                load_taxonomy(path, cfg.topics.extra), clauses, trust.unreliable() if trust else ()
            )

    # ------------------------------------------------------------ text scores

    def _negative_probabilities(self, texts: Sequence[str]) -> list[float]:
        """P(negative) of each text, in one batch when the analyzer can; an analyzer that fails
        answers 0.5 (no opinion) and the failure is logged, the touchpoint is never lost."""
        if not texts:
            return []
        batch = getattr(self.analyzer, "negative_probabilities", None)
        try:
            if callable(batch):
                return [float(p) for p in batch(list(texts))]
            return [1.0 - float(self.analyzer.positive_probability(t)) for t in texts]
        except Exception:  # a third-party engine must not lose the touchpoint
            log.exception("sentiment engine %s failed on %d text(s); judged without it", self.analyzer.name, len(texts))
            return [0.5] * len(texts)

    def _explain(self, text: str) -> str | None:
        explain = getattr(self.analyzer, "explain", None)
        if not callable(explain):
            return None
        try:
            return str(explain(text)) or None
        except Exception:
            log.exception("sentiment engine %s could not explain a verdict", self.analyzer.name)
            return None

    # ------------------------------------------------------------ verdicts

    def judge(self, event: TouchpointEvent) -> Verdict:
        """The verdict on one event (never raises on odd input: an unjudgeable event is not negative)."""
        return self.judge_many([event])[0]

    def judge_many(self, events: Sequence[TouchpointEvent]) -> list[Verdict]:
        """The verdicts on a batch of events; every text is scored in one call of the model."""
        pending: list[_Pending | None] = []
        for ev in events:
            fb = ev.feedback
            if fb is None or ev.kind.value not in self._kinds:
                pending.append(None)
                continue
            prepared = prepare(fb.text) if fb.text is not None else None
            text = prepared.text if prepared is not None else ""
            note = None
            if prepared is not None:
                note = f"text not judged: {prepared.reason}" if prepared.reason else prepared.note
            question = ev.attributes.get("question") if isinstance(ev.attributes.get("question"), str) else None
            judge_text = (
                bool(text)
                and fb.sentiment is None
                and ev.kind.value in self._sentiment_kinds
                and len(text) >= self.cfg.sentiment.min_chars
                # an engine without a batch API (snownlp: ~10 ms a text, seconds to load) is asked
                # only when the text alone decides; the model always answers (probability, why)
                and (self._batch or not (_score_signals(fb, self.cfg)[0] or _good(fb)))
            )
            pending.append(_Pending(ev, text, note, judge_text, question))
        texts = [p.text for p in pending if p is not None and p.judge_text]
        probs = iter(self._negative_probabilities(texts))
        tagged = iter(
            self.tagger.tag_many([p.text for p in pending if p is not None and p.text])
            if self.tagger is not None
            else []
        )
        out: list[Verdict] = []
        for p in pending:
            if p is None:
                out.append(Verdict(False))
                continue
            p_neg = next(probs) if p.judge_text else None
            topics = next(tagged) if (self.tagger is not None and p.text) else []
            out.append(self._verdict(p, p_neg, topics))
        return out

    def _verdict(self, p: _Pending, p_neg: float | None, topics: list[TopicTag]) -> Verdict:
        ev = p.event
        fb = ev.feedback
        assert fb is not None
        score_reasons, high = _score_signals(fb, self.cfg)
        reasons = list(score_reasons)
        # phone numbers out first: 12345 inside 138-1234-5678 is not a call to the 12345 hotline
        keywords = [h.keyword for h in self.keywords.find(mask_text(p.text))] if p.text else []
        if keywords:
            reasons.append("alarm keyword(s): " + "、".join(keywords))
        sentiment: float | None = None
        if fb.sentiment is not None:
            sentiment = (fb.sentiment + 1) / 2  # the source's -1..1 to our 0..1
            p_neg = 1 - sentiment
        if p_neg is not None and p.question:
            if _NOTHING.match(p.text):
                p_neg = 0.0
            else:
                for prior in self.cfg.sentiment.questions:
                    if any(m in p.question for m in prior.match):
                        p_neg = _shift(p_neg, prior.shift)
                        break
        if p_neg is not None and sentiment is None:
            sentiment = 1 - p_neg
        threshold = self.cfg.sentiment.threshold(ev.source, ev.channel)
        text_negative = sentiment is not None and sentiment < threshold and not _good(fb)
        why = None
        if text_negative:
            why = self._explain(p.text) if fb.sentiment is None else None
            line = f"negative text ({self.analyzer.name} {1 - sentiment:.2f} negative)"  # type: ignore[operator]
            reasons.append(line + (": " + why if why else ""))
        if keywords or high:
            severity: Severity | None = "high"
        elif score_reasons:
            severity = "medium"
        elif text_negative:
            severity = "low"
        else:
            severity = None
        if severity is not None:
            bad = [t.name for t in topics if t.polarity == "negative"]
            if bad:
                reasons.append("topics: " + "、".join(bad))
        return Verdict(
            severity is not None,
            severity,
            reasons,
            keywords,
            sentiment,
            None if sentiment is None else 1 - sentiment,
            topics,
            why,
            p.note,
        )
