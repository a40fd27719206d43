"""The feedback model: hashed character n-grams and word-list features into a linear model.

Features of one text (each a string, hashed with CRC-32 into ``2**bits`` buckets):

- character 1-3-grams (``c:好吃``); the clause after the last 但是 / 不过 / 就是 (虽然…但是…) gives its
  n-grams a second time with a ``k:`` prefix, so the model can weigh what comes after the turn;
- listed opinion words (:mod:`~hub.features.feedback.lexicon`), each as ``w:差`` or, under 不/没,
  ``n:差``, and as counts ``L:neg`` / ``L:pos`` / ``L:neg~`` (negated) / ``L:pos~`` that the model
  weighs for every listed word, also those its training data never had;
- emoji with a polarity, English and pinyin words, the length and the punctuation.

The values of one text are scaled to unit length; ``score = w·x + b``; the probability that the text
is negative is Platt-calibrated on held-out data: ``1 / (1 + exp(-(a·score + c)))``.

The weights are plain arrays (``weights.npz``, loaded with ``allow_pickle=False``) and a JSON file
(``model.json``): no pickle, nothing that runs code at load. Loaded once per process; ``predict`` is
thread-safe (it reads the arrays, it never writes them).
"""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hub.features.feedback import lexicon
from hub.features.feedback.textprep import Prepared, prepare

FORMAT = 1
SHIPPED = Path(__file__).resolve().parent / "model" / "default"

_LEX_ALL = lexicon.NEGATIVE_WORDS | lexicon.POSITIVE_WORDS
#: per first character, the lengths of the listed words that start with it, longest first
_LEX_SIZES: dict[str, tuple[int, ...]] = {
    first: tuple(sorted({len(w) for w in _LEX_ALL if w[0] == first}, reverse=True))
    for first in {w[0] for w in _LEX_ALL}
}
_LEX_START = re.compile("[" + "".join(re.escape(c) for c in sorted(_LEX_SIZES)) + "]")
_HAS_LATIN = re.compile(r"[a-z]")
_CONTRAST = re.compile("|".join(map(re.escape, lexicon.CONTRAST)))
_LATIN = re.compile(r"[a-z]{2,}")
_EMOJI_NEG = frozenset(lexicon.EMOJI_NEGATIVE)
_EMOJI_POS = frozenset(lexicon.EMOJI_POSITIVE)
_EMOJI_ANY = _EMOJI_NEG | _EMOJI_POS
_NEGATORS = tuple(lexicon.NEGATORS)
_LATIN_WORDS = lexicon.LATIN_NEGATIVE | lexicon.LATIN_POSITIVE
_EMOJI = lexicon.EMOJI_NEGATIVE + lexicon.EMOJI_POSITIVE
#: one-character words that are a reason on their own
_CJK_WORD = {w: True for w in lexicon.NEGATIVE_WORDS if len(w) == 1}
_PUNCT = " ，,。.！!？?、；;：:~～…"


def prepare_text(raw: object) -> Prepared:
    """:func:`~hub.features.feedback.textprep.prepare` with the model's own words and emoji."""
    return prepare(raw, latin_words=_LATIN_WORDS, emoji=_EMOJI)


def _negated(text: str, start: int) -> bool:
    return text[max(0, start - 3) : start].endswith(_NEGATORS)


def _lexicon_matches(text: str) -> list[tuple[int, int, str]]:
    """Longest listed words, left to right, not overlapping: tried only where a listed word can
    start, with only the lengths words starting with that character have."""
    out: list[tuple[int, int, str]] = []
    free = 0  # the first position not inside a word found
    lex, sizes = _LEX_ALL, _LEX_SIZES
    for m in _LEX_START.finditer(text):
        i = m.start()
        if i < free:
            continue
        for size in sizes[m.group()]:
            word = text[i : i + size]
            if word in lex:
                out.append((i, i + size, word))
                free = i + size
                break
    return out


def _turn(text: str) -> int:
    """Where the clause after the last contrast word starts (-1: no turn)."""
    turn = -1
    for m in _CONTRAST.finditer(text):
        if m.start() > 0:
            turn = m.end()
    return turn


def symbolic(text: str) -> list[tuple[str, int, int]]:
    """The features that are not character n-grams, with the span of text each came from
    ((-1, -1): the whole text)."""
    out: list[tuple[str, int, int]] = []
    turn = _turn(text)
    if not _EMOJI_ANY.isdisjoint(text):  # most texts have none: no loop over their characters
        for i, ch in enumerate(text):
            if ch in _EMOJI_NEG:
                out.append(("E:neg", i, i + 1))
            elif ch in _EMOJI_POS:
                out.append(("E:pos", i, i + 1))
    for start, end, word in _lexicon_matches(text):
        polarity = "neg" if word in lexicon.NEGATIVE_WORDS else "pos"
        if _negated(text, start):
            s = max(0, start - 2)
            out += [("n:" + word, s, end), ("L:" + polarity + "~", s, end)]
            if turn >= 0 and start >= turn:
                out.append(("K:" + polarity + "~", s, end))
        else:
            out += [("w:" + word, start, end), ("L:" + polarity, start, end)]
            if turn >= 0 and start >= turn:
                out.append(("K:" + polarity, start, end))
    if _HAS_LATIN.search(text):
        for m in _LATIN.finditer(text):
            word = m.group(0)
            out.append(("t:" + word, m.start(), m.end()))
            if word in lexicon.LATIN_NEGATIVE:
                out.append(("L:neg", m.start(), m.end()))
            elif word in lexicon.LATIN_POSITIVE:
                out.append(("L:pos", m.start(), m.end()))
    chars = len(text) - sum(text.count(p) for p in _PUNCT)
    size = "1" if chars <= 2 else "5" if chars <= 5 else "15" if chars <= 15 else "50" if chars <= 50 else "L"
    out.append(("len:" + size, -1, -1))
    if "!" in text:
        out.append(("p:!", -1, -1))
    if "?" in text:
        out.append(("p:?", -1, -1))
    return out


# character n-grams are hashed in numpy, all positions at once (a string and a CRC per n-gram would
# cost ~10x more): multiply-xor of the code points, then multiply-shift into the buckets
_M = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_SALT = {1: np.uint64(0x27D4EB2F165667C5), 2: np.uint64(0x94D049BB133111EB), 3: np.uint64(0xBF58476D1CE4E5B9)}
_TURN_SALT = np.uint64(0x5851F42D4C957F2D)
_MIX = np.uint64(0xD6E8FEB86659FD93)


def _ngram_hashes(codes: np.ndarray, size: int, bits: int, salt: np.uint64) -> np.ndarray:
    n = len(codes) - size + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    h = salt ^ (codes[:n] * _M[0])
    for k in range(1, size):
        h = h ^ (codes[k : k + n] * _M[k])
    h = h * _MIX
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def ngram_indices(text: str, bits: int) -> list[np.ndarray]:
    """Bucket indices of the 1-, 2- and 3-grams of ``text`` (one array per size, position order),
    and of the 2-grams after the turn (the fourth array, positions from the turn on)."""
    with np.errstate(over="ignore"):
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        out = [_ngram_hashes(codes, size, bits, _SALT[size]) for size in (1, 2, 3)]
        turn = _turn(text)
        out.append(_ngram_hashes(codes[turn:], 2, bits, _TURN_SALT) if turn >= 0 else np.zeros(0, dtype=np.int64))
    return out


def _crc(feature: str, bits: int) -> int:
    return zlib.crc32(feature.encode()) & ((1 << bits) - 1)


def hash_features(text: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket indices and values (scaled to unit length) of one prepared text's features."""
    sym = symbolic(text)
    parts = ngram_indices(text, bits)
    parts.append(np.fromiter((_crc(f, bits) for f, _, _ in sym), dtype=np.int64, count=len(sym)))
    idx = np.concatenate(parts)
    vals = np.full(len(idx), 1.0 / math.sqrt(max(1, len(idx))), dtype=np.float32)
    return idx, vals


def batch_features(texts: Sequence[str], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The bucket indices of every feature of every prepared text (what :func:`hash_features`
    gives each text, in another order), and the text each belongs to: the n-grams of all the texts
    hashed together over their joined code points (:func:`_ngram_hashes`, a few numpy calls per
    batch), an n-gram kept where it does not cross two texts."""
    n = len(texts)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    owners: list[np.ndarray] = []
    parts: list[np.ndarray] = []
    with np.errstate(over="ignore"):
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        if len(codes):
            owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
            in2 = owner[:-1] == owner[1:]  # the n-grams of one text, not across two
            in3 = in2[:-1] & in2[1:]
            owners += [owner, owner[:-1][in2], owner[:-2][in3]]
            parts += [
                _ngram_hashes(codes, 1, bits, _SALT[1]),
                _ngram_hashes(codes, 2, bits, _SALT[2])[in2],
                _ngram_hashes(codes, 3, bits, _SALT[3])[in3],
            ]
            turns = np.fromiter((_turn(t) for t in texts), dtype=np.int64, count=n)
            if (turns >= 0).any():  # the 2-grams from the turn on, a second time
                own2 = owner[:-1]
                start = np.cumsum(lengths) - lengths
                after = in2 & (turns[own2] >= 0) & (np.arange(len(own2)) - start[own2] >= turns[own2])
                owners.append(own2[after])
                parts.append(_ngram_hashes(codes, 2, bits, _TURN_SALT)[after])
    sym_owner: list[int] = []
    sym_idx: list[int] = []
    for i, text in enumerate(texts):
        for f, _, _ in symbolic(text):
            sym_owner.append(i)
            sym_idx.append(_crc(f, bits))
    owners.append(np.array(sym_owner, dtype=np.int64))
    parts.append(np.array(sym_idx, dtype=np.int64))
    return np.concatenate(owners), np.concatenate(parts)


@dataclass
class Explanation:
    """Why the model leans negative: the spans of the text that pushed most."""

    spans: list[tuple[str, float]]  # (text, push toward negative), strongest first

    def line(self) -> str:
        return "、".join(f"「{s}」" for s, _ in self.spans)


class TextModel:
    """A trained linear model over :func:`features`, loaded from a folder (``model.json`` +
    ``weights.npz``)."""

    def __init__(self, weights: np.ndarray, bias: float, platt: tuple[float, float], meta: dict[str, Any]):
        self.weights = weights
        self.bias = bias
        self.platt = platt
        self.meta = meta
        self.bits = int(meta["bits"])
        self.version = str(meta.get("version", "?"))

    @classmethod
    def load(cls, folder: Path) -> TextModel:
        """Read a model folder; a missing or malformed one is a :class:`ModelError` naming the file."""
        meta_file, weights_file = folder / "model.json", folder / "weights.npz"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            with np.load(weights_file, allow_pickle=False) as npz:
                weights = np.asarray(npz["weights"], dtype=np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot read the feedback model in {folder}: {exc}") from None
        if meta.get("format") != FORMAT or weights.shape != (1 << int(meta.get("bits", 0)),):
            raise ModelError(f"{folder}: not a feedback model of format {FORMAT} (model.json / weights.npz disagree)")
        platt = meta["calibration"]
        return cls(weights, float(meta["bias"]), (float(platt["a"]), float(platt["b"])), meta)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Raw scores ``w·x + b`` (positive: leans negative) of prepared texts, in one pass: the
        n-grams of all the texts are hashed at once (:func:`batch_features`), so a batch of short
        texts (the clauses the topic tagger scores) costs no numpy call per text."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        owner, idx = batch_features(texts, self.bits)
        n = len(texts)
        sums = np.bincount(owner, weights=self.weights[idx].astype(np.float64), minlength=n)
        counts = np.bincount(owner, minlength=n)
        # each feature's value is 1/sqrt(count) as float32, as hash_features gives it (training)
        scale = (1.0 / np.sqrt(np.maximum(counts, 1))).astype(np.float32).astype(np.float64)
        return sums * scale + self.bias

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probability that each prepared text is negative."""
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * self.scores(texts) + b)))

    def explain(self, text: str, top: int = 3) -> Explanation:
        """The spans whose features pushed ``text`` most toward negative."""
        _, vals = hash_features(text, self.bits)
        scale = float(vals[0]) if len(vals) else 0.0
        w = self.weights
        push: dict[tuple[int, int], float] = {}

        def add(start: int, end: int, c: float) -> None:
            push[(start, end)] = push.get((start, end), 0.0) + c

        grams = ngram_indices(text, self.bits)
        for size, hashes in zip((1, 2, 3), grams[:3], strict=True):
            for i, c in enumerate(w[hashes] * scale):
                add(i, i + size, float(c))
        turn = _turn(text)
        for i, c in enumerate(w[grams[3]] * scale):
            add(turn + i, turn + i + 2, float(c))
        for feat, start, end in symbolic(text):
            if start >= 0:
                add(start, end, float(w[_crc(feat, self.bits)]) * scale)
        # listed words first (they read as reasons: 「太慢」「凉了」), then the strongest n-grams
        words = {
            (start, end) for feat, start, end in symbolic(text) if start >= 0 and feat[:2] in ("w:", "n:", "t:", "E:")
        }
        ranked = sorted(push.items(), key=lambda kv: (kv[0] not in words, -kv[1]))
        chosen: list[tuple[int, int, float]] = []
        for (s, e), c in ranked:
            if c <= 0.01 or len(chosen) >= top:
                continue
            piece = text[s:e]
            if any(ch in _PUNCT for ch in piece) or any(s < ce and cs < e for cs, ce, _ in chosen):
                continue
            # one character is a poor reason ("不"), unless it is all there is or an emoji
            if len(piece) == 1 and len(text) > 2 and piece not in _EMOJI and not _CJK_WORD.get(piece):
                continue
            chosen.append((s, e, c))
        return Explanation([(text[s:e], round(c, 3)) for s, e, c in chosen])


class ModelError(Exception):
    """The model folder is missing or not a feedback model."""


_lock = threading.Lock()
_loaded: dict[str, TextModel] = {}


def load_cached(folder: Path) -> TextModel:
    """One :class:`TextModel` per folder per process (loading reads a few MB)."""
    key = str(folder.resolve())
    with _lock:
        model = _loaded.get(key)
        if model is None:
            model = _loaded[key] = TextModel.load(folder)
        return model
