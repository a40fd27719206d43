"""``cxhub feedback judge``: the configured detector on JSON lines, and its figures on labelled ones.

Input, one JSON object a line: ``text`` and optionally ``rating`` with its ``scale`` (default 5),
``question`` (the survey question the text answers), ``source``, ``channel`` and ``label``
(``negative`` / ``positive``, or true / false / 1 / 0: is it negative). Output, one line each:
``negative``, ``probability``, ``severity``, ``topics`` (with polarity and span), ``reasons``,
``why``, ``note``; a line that cannot be read gets ``error`` and its reason, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from hub.features.feedback.detection import Detector, Verdict
from hub.model import EventKind, Feedback, TouchpointEvent


class LineError(ValueError):
    """One input line that is not a feedback object."""


def _label(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("negative", "neg", "1", "true", "yes", "差评"):
        return True
    if text in ("positive", "pos", "0", "false", "no", "neutral", "好评"):
        return False
    raise LineError(f"label {value!r}: use negative / positive (or true / false)")


def to_event(obj: Any, n: int) -> tuple[TouchpointEvent, bool | None]:
    """The touchpoint a judge line stands for, and its label (None: unlabelled)."""
    if not isinstance(obj, dict):
        raise LineError("not a JSON object")
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise LineError(f"text is a {type(text).__name__}, not a string")
    rating = obj.get("rating")
    try:
        fb = Feedback(
            text=text,
            rating=None if rating is None else Decimal(str(rating)),
            rating_scale=int(obj.get("scale") or 5),
            nps=obj.get("nps"),
            csat=obj.get("csat"),
        )
    except (ValidationError, InvalidOperation, ValueError, TypeError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise LineError(f"rating/scale: {first}") from None
    attributes: dict[str, Any] = {}
    if isinstance(obj.get("question"), str):
        attributes["question"] = obj["question"]
    event = TouchpointEvent(
        source=str(obj.get("source") or "judge")[:64],
        external_id=str(n),
        kind=EventKind.review,
        channel=obj.get("channel") if isinstance(obj.get("channel"), str) else None,
        occurred_at=datetime.now(UTC),
        feedback=fb,
        attributes=attributes,
    )
    return event, _label(obj.get("label"))


def verdict_doc(v: Verdict) -> dict[str, Any]:
    """The JSON answer for one line."""
    return {
        "negative": v.negative,
        "probability": None if v.probability is None else round(v.probability, 4),
        "severity": v.severity,
        "topics": v.topics_doc(),
        "reasons": v.reasons,
        "why": v.why,
        "note": v.note,
    }


@dataclass
class Tally:
    """Counts of a labelled run."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    unlabelled: int = 0
    errors: int = 0
    probabilities: list[tuple[float, bool]] = field(default_factory=list)

    def add(self, predicted: bool, label: bool | None, probability: float | None) -> None:
        if label is None:
            self.unlabelled += 1
            return
        if predicted and label:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif label:
            self.fn += 1
        else:
            self.tn += 1
        if probability is not None:
            self.probabilities.append((probability, label))

    def figures(self) -> dict[str, Any]:
        """Precision, recall, F1 of "negative" and the false-alarm rate on positive lines."""
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        fa = self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0
        return {
            "labelled": self.tp + self.fp + self.fn + self.tn,
            "negative": self.tp + self.fn,
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f1, 4),
            "false_alarm_rate": round(fa, 4),
            "unlabelled": self.unlabelled,
            "errors": self.errors,
        }

    def thresholds(self) -> list[dict[str, Any]]:
        """What a text-probability threshold would give (lines whose text was scored), to tune
        ``feedback.sentiment.negative_below`` (= 1 - threshold) on one's own reviews."""
        out = []
        for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            tally = Tally()
            for p, label in self.probabilities:
                tally.add(p >= t, label, None)
            out.append({"negative_at": t, "negative_below": round(1 - t, 2)} | tally.figures())
        return out


def judge_lines(detector: Detector, lines: Iterable[str], tally: Tally, batch: int = 256) -> Iterator[dict[str, Any]]:
    """One answer per input line (blank lines are skipped), in batches of ``batch`` through the model."""
    pending: list[tuple[TouchpointEvent, bool | None]] = []

    def flush() -> Iterator[dict[str, Any]]:
        verdicts = detector.judge_many([ev for ev, _ in pending])
        for (_ev, label), v in zip(pending, verdicts, strict=True):
            tally.add(v.negative, label, v.probability)
            yield verdict_doc(v) | ({"label": "negative" if label else "positive"} if label is not None else {})
        pending.clear()

    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise LineError(f"not JSON ({exc.args[0] if exc.args else exc})") from None
            pending.append(to_event(obj, n))
        except LineError as exc:
            yield from flush()
            tally.errors += 1
            yield {"line": n, "error": str(exc)}
            continue
        if len(pending) >= batch:
            yield from flush()
    yield from flush()
