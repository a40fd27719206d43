"""From what a customer typed to text a model can read, or a reason why there is nothing to read.

Every input gets an answer, never an exception: ``None`` and empty text, 100 kB of text (the start
and the end are kept: a verdict is often the last sentence), HTML (tags dropped, entities decoded),
lone UTF-16 surrogates (dropped), full-width forms (NFKC), emoji only (kept: 😡 has a polarity),
text with no Chinese and no known English or pinyin word (unknown, with the reason).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

#: the model reads at most this many characters: the first 1,500 and the last 500
MAX_CHARS = 2000

_SURROGATE = re.compile("[\ud800-\udfff]")
_HTML_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|</?[a-zA-Z][^<>]{0,500}>", re.S | re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\ufeff]")
_RUNS = re.compile(r"(.)\1{3,}")  # 哈哈哈哈哈哈 -> 哈哈哈
_SPACE = re.compile(r"\s+")
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[a-z]{2,}")


@dataclass(frozen=True)
class Prepared:
    """A text ready for the model, or the reason it cannot be judged (``text`` is then empty)."""

    text: str
    reason: str | None = None  # "empty", "no Chinese text", ...
    note: str | None = None  # what was changed: "HTML removed", "cut to 2000 of 102400 characters"

    @property
    def judgeable(self) -> bool:
        return self.reason is None


def prepare(raw: object, *, latin_words: frozenset[str] = frozenset(), emoji: str = "") -> Prepared:
    """Clean ``raw`` for the model. ``latin_words`` and ``emoji``: what still carries an opinion in a
    text with no Chinese character (good / hao chi / 👍)."""
    if raw is None:
        return Prepared("", "no text")
    if not isinstance(raw, str):
        return Prepared("", f"text is a {type(raw).__name__}, not a string")
    notes: list[str] = []
    text = raw
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("", text)
        notes.append("invalid characters removed")
    if len(text) > 4 * MAX_CHARS:  # before the regular expressions, so 100 kB costs what 8 kB costs
        notes.append(f"cut to {MAX_CHARS} of {len(raw)} characters")
        text = text[: 3 * MAX_CHARS] + " " + text[-MAX_CHARS:]
    if "<" in text and _HTML_TAG.search(text):
        text = _HTML_TAG.sub(" ", text)
        notes.append("HTML removed")
    if "&" in text:
        text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text).lower()
    text = _CONTROL.sub("", text)
    text = _RUNS.sub(r"\1\1\1", text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > MAX_CHARS:
        if not any(n.startswith("cut") for n in notes):
            notes.append(f"cut to {MAX_CHARS} of {len(raw)} characters")
        text = text[: MAX_CHARS - 501] + " " + text[-500:]
    note = "; ".join(notes) or None
    if not text:
        return Prepared("", "empty text" if not notes else "nothing left after cleaning", note)
    if not _CJK.search(text):
        has_latin = any(w in latin_words for w in _LATIN.findall(text))
        has_emoji = any(ch in emoji for ch in text)
        if not (has_latin or has_emoji):
            return Prepared("", "no Chinese text and no word the model knows", note)
    return Prepared(text, None, note)
