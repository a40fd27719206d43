"""Topic tagging: what a piece of feedback is about (服务态度, 配送/物流...), with a polarity and a span.

The taxonomy is YAML (``topics.yaml`` beside this module is the default for retail, restaurants,
food delivery and hotels): each topic has an id, a display name and words. A topic is tagged when
one of its words is in the text, matched longest first and not inside another topic's longer word;
its polarity is the feedback model's verdict on the clause that holds the word (one batch for all
clauses of all texts), so "味道不错，就是配送太慢" gives 口味 + and 配送 -.

Staff correct topics ("wrong topic" verdicts); ``cxhub model train`` learns from them which words of
the taxonomy name a topic in this deployment's feedback and which do not (:func:`learn_word_trust`):
a word staff rejected for a topic more often than they let it stand, and at least
``MIN_REJECTIONS`` times, stops naming that topic (装修 is the decor of a restaurant, not a hotel
room's facilities). The counts are saved with the model version (``topics.json``), so a rollback
returns to the topics of the version before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.errors import ConfigError

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "topics.yaml"
#: the file beside a model version's weights with the topic words staff confirmed and rejected
TRUST_FILE = "topics.json"
#: a word stops naming a topic once staff rejected it this many times, and more often than not
MIN_REJECTIONS = 2
_CLAUSE = re.compile(r"[^，,。.！!？?；;\n~～]+")


@dataclass(frozen=True)
class Topic:
    """One topic of the taxonomy."""

    id: str
    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class TopicTag:
    """A topic found in one text: its polarity (``negative`` / ``positive``) and the span that named it."""

    topic: str
    name: str
    polarity: str
    span: str
    start: int
    end: int
    probability: float  # that the clause is negative

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "name": self.name,
            "polarity": self.polarity,
            "span": self.span,
            "start": self.start,
            "end": self.end,
        }


def load_taxonomy(path: Path | None = None, extra: dict[str, list[str]] | None = None) -> list[Topic]:
    """Read a taxonomy file (default: the one shipped); ``extra`` adds words to topics by id."""
    path = path or DEFAULT_TAXONOMY
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw = doc["topics"]
        topics = [
            Topic(str(tid), str(spec.get("name") or tid), tuple(str(w).lower() for w in spec.get("words") or ()))
            for tid, spec in raw.items()
        ]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a topic taxonomy (topics: {{id: {{name, words}}}}): {exc}") from None
    known = {t.id for t in topics}
    for tid in extra or {}:
        if tid not in known:
            raise ConfigError(f"feedback.topics.extra names unknown topic {tid!r}; topics: {sorted(known)}")
    if extra:
        topics = [Topic(t.id, t.name, t.words + tuple(w.lower() for w in extra.get(t.id, ()))) for t in topics]
    return topics


def word_pattern(words: Iterable[str]) -> str:
    """A regex matching the longest of ``words`` at the leftmost place, as the alternation of the
    words longest first does, built as a trie (``服务(?:态度|员|)``): at each character the regex
    engine takes the one branch that can continue, where the plain alternation tries every word.
    Extensions come before the end of a shorter word, so the longest word wins."""
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def branch(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + branch(child) for ch, child in sorted(node.items()) if ch]
        if "" in node and alts:
            alts.append("")
        if len(alts) <= 1:
            return alts[0] if alts else ""
        return "(?:" + "|".join(alts) + ")"

    return branch(trie)


class TopicTagger:
    """Tags texts with the topics of a taxonomy; polarity from a clause scorer (texts -> P(negative))."""

    def __init__(
        self,
        topics: Sequence[Topic],
        negative_probability: Callable[[list[str]], Sequence[float]],
        unreliable: Collection[tuple[str, str]] = (),
    ):
        """``unreliable``: (topic id, word) pairs that no longer name the topic (learned from staff)."""
        self.topics = {t.id: t for t in topics}
        self._score = negative_probability
        self.unreliable = frozenset(unreliable)
        words: dict[str, list[str]] = {}
        for t in topics:
            for w in t.words:
                if w:
                    words.setdefault(w, []).append(t.id)
        self._words = words
        self._pattern = re.compile(word_pattern(words)) if words else None

    def find(self, text: str) -> list[tuple[str, int, int, int, int]]:
        """(topic id, word start, word end, clause start, clause end) of every topic in ``text``,
        the first place each topic is named."""
        if self._pattern is None:
            return []
        out: list[tuple[str, int, int, int, int]] = []
        seen: set[str] = set()
        skip = self.unreliable
        for clause in _CLAUSE.finditer(text):
            for m in self._pattern.finditer(text, clause.start(), clause.end()):
                word = m.group(0)
                for tid in self._words[word]:
                    if tid not in seen and not (skip and (tid, word) in skip):
                        seen.add(tid)
                        out.append((tid, m.start(), m.end(), clause.start(), clause.end()))
        return out

    def tag_many(self, texts: Sequence[str], threshold: float = 0.5) -> list[list[TopicTag]]:
        """The topics of each (prepared) text; all clauses are scored in one batch."""
        found = [self.find(t) for t in texts]
        clauses: list[str] = []
        for text, hits in zip(texts, found, strict=True):
            clauses += [text[cs:ce] for _, _, _, cs, ce in hits]
        probs = list(self._score(clauses)) if clauses else []
        out: list[list[TopicTag]] = []
        k = 0
        for text, hits in zip(texts, found, strict=True):
            tags = []
            for tid, s, e, cs, ce in hits:
                p = float(probs[k])
                k += 1
                topic = self.topics[tid]
                tags.append(
                    TopicTag(
                        tid, topic.name, "negative" if p >= threshold else "positive", text[cs:ce].strip(), s, e, p
                    )
                )
            out.append(tags)
        return out


@dataclass
class WordTrust:
    """How often staff let a taxonomy word stand for a topic and how often they rejected it."""

    counts: dict[tuple[str, str], list[int]]  # (topic id, word) -> [confirmed, rejected]
    verdicts: int = 0
    min_rejections: int = MIN_REJECTIONS

    def unreliable(self) -> frozenset[tuple[str, str]]:
        """The (topic id, word) pairs that stop naming their topic."""
        return frozenset(key for key, (ok, bad) in self.counts.items() if bad >= self.min_rejections and bad > ok)

    def as_json(self) -> dict[str, Any]:
        words = [
            {"topic": t, "word": w, "confirmed": ok, "rejected": bad}
            for (t, w), (ok, bad) in sorted(self.counts.items())
        ]
        return {"format": 1, "verdicts": self.verdicts, "min_rejections": self.min_rejections, "words": words}

    def save(self, folder: Path) -> None:
        (folder / TRUST_FILE).write_text(json.dumps(self.as_json(), ensure_ascii=False, indent=2) + "\n", "utf-8")


def learn_word_trust(tagger: TopicTagger, verdicts: Iterable[tuple[str, Collection[str]]]) -> WordTrust:
    """Count, per (topic, word) the taxonomy matched, how often staff let it stand and how often they
    rejected it. ``verdicts``: (prepared text, the topics staff called wrong) of each "wrong topic"
    verdict; the topics of that text staff did not call wrong count as confirmed."""
    base = TopicTagger(list(tagger.topics.values()), tagger._score)  # every word, none skipped
    counts: dict[tuple[str, str], list[int]] = {}
    n = 0
    for text, wrong in verdicts:
        n += 1
        for tid, s, e, _, _ in base.find(text):
            counts.setdefault((tid, text[s:e]), [0, 0])[1 if tid in wrong else 0] += 1
    return WordTrust(counts, n)


def load_word_trust(folder: Path | None) -> WordTrust | None:
    """The word trust saved with a model version (``topics.json``); None when the version has none.
    A file that is there but unreadable is a :class:`ConfigError` naming it."""
    if folder is None:
        return None
    path = folder / TRUST_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        counts = {(str(w["topic"]), str(w["word"])): [int(w["confirmed"]), int(w["rejected"])] for w in doc["words"]}
        return WordTrust(counts, int(doc.get("verdicts", 0)), int(doc.get("min_rejections", MIN_REJECTIONS)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a topic word-trust file ({{words: [{{topic, word, confirmed, rejected}}]}}): {exc}"
        ) from None


def topic_figures(found: Sequence[Collection[str]], gold: Sequence[Collection[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 of found topics against gold topics, text by text."""
    tp = sum(len(set(f) & set(g)) for f, g in zip(found, gold, strict=True))
    fp = sum(len(set(f) - set(g)) for f, g in zip(found, gold, strict=True))
    fn = sum(len(set(g) - set(f)) for f, g in zip(found, gold, strict=True))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "labels": tp + fn}
