"""Topic tagging: what a piece of feedback is about (服务态度, 配送/物流...), with a polarity and a span.

The taxonomy is YAML (``topics.yaml`` beside this module is the default for retail, restaurants,
food delivery and hotels): each topic has an id, a display name and words. A topic is tagged when
one of its words is in the text, matched longest first and not inside another topic's longer word;
its polarity is the feedback model's verdict on the clause that holds the word (one batch for all
clauses of all texts), so "味道不错，就是配送太慢" gives 口味 + and 配送 -.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.errors import ConfigError

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "topics.yaml"
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

    def __init__(self, topics: Sequence[Topic], negative_probability: Callable[[list[str]], Sequence[float]]):
        self.topics = {t.id: t for t in topics}
        self._score = negative_probability
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
        for clause in _CLAUSE.finditer(text):
            for m in self._pattern.finditer(text, clause.start(), clause.end()):
                for tid in self._words[m.group(0)]:
                    if tid not in seen:
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
