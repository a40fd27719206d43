"""Is a touchpoint negative, and how bad is it?

Signals, each recorded in the verdict's ``reasons`` (shown on the case):

- scores on normalised scales: rating (``Feedback.rating5``) <= 2, NPS <= 6, CSAT <= 2, CES >= 5;
- text sentiment (a :class:`~hub.features.feedback.sentiment.SentimentAnalyzer`; a sentiment the source
  already supplied in ``feedback.sentiment`` is used as is); it is consulted only when nothing else
  decides: not when a score is already negative, not when the customer's own score is good;
- alarm keywords (食品安全, 过期, 投诉, 12315, 骗...): always a case, always high severity.

Severity: high = alarm keyword or a very bad score (``feedback.high``: 1 star, NPS <= 3...);
medium = a negative score; low = negative text alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hub.features.feedback.config import FeedbackConfig, Severity
from hub.features.feedback.sentiment import SentimentAnalyzer
from hub.model import Feedback, TouchpointEvent
from hub.privacy import mask_text


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Numeric keywords (hotlines 12315 / 12345) must stand alone, not inside a longer number."""
    if keyword.isdigit():
        return re.compile(rf"(?<!\d){keyword}(?!\d)")
    return re.compile(re.escape(keyword), re.IGNORECASE)


@dataclass
class Verdict:
    """What detection found about one touchpoint."""

    negative: bool
    severity: Severity | None = None
    reasons: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    sentiment: float | None = None  # probability positive, 0..1


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


class Detector:
    """Applies the ``feedback`` rules to touchpoints."""

    def __init__(self, cfg: FeedbackConfig, analyzer: SentimentAnalyzer):
        self.cfg = cfg
        self.analyzer = analyzer
        self._kinds = set(cfg.kinds)
        self._sentiment_kinds = set(cfg.sentiment.kinds)
        self._keywords = [(k, _keyword_pattern(k)) for k in cfg.alarm_keywords if k]

    def judge(self, event: TouchpointEvent) -> Verdict:
        """The verdict on one event (never raises on odd input: an unjudgeable event is not negative)."""
        fb = event.feedback
        if fb is None or event.kind.value not in self._kinds:
            return Verdict(False)
        score_reasons, high = _score_signals(fb, self.cfg)
        reasons = list(score_reasons)
        text = (fb.text or "").strip()
        # phone numbers out first: 12345 inside 138-1234-5678 is not a call to the 12345 hotline
        scan = mask_text(text)
        keywords = [k for k, pattern in self._keywords if pattern.search(scan)]
        if keywords:
            reasons.append("alarm keyword(s): " + "、".join(keywords))
        sentiment: float | None = None
        if fb.sentiment is not None:
            sentiment = (fb.sentiment + 1) / 2  # the source's -1..1 to our 0..1
        elif (
            text
            and event.kind.value in self._sentiment_kinds
            and len(text) >= self.cfg.sentiment.min_chars
            and not (score_reasons or keywords or _good(fb))
        ):
            # only text alone decides anything (severity low): skip the model when scores or keywords
            # already made it a case, it is the costliest step on the ingest path
            sentiment = self.analyzer.positive_probability(text)
        text_negative = sentiment is not None and sentiment < self.cfg.sentiment.negative_below
        if text_negative:
            reasons.append(f"negative text ({self.analyzer.name} {sentiment:.2f})")
        if keywords or high:
            severity: Severity | None = "high"
        elif score_reasons:
            severity = "medium"
        elif text_negative:
            severity = "low"
        else:
            severity = None
        return Verdict(severity is not None, severity, reasons, keywords, sentiment)
