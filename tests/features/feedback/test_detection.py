"""Detection: score thresholds on normalised scales, alarm keywords, sentiment, severity."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kit.cases import review

from hub.errors import ConfigError
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.detection import Detector
from hub.features.feedback.sentiment import LexiconSentiment, NoSentiment, SnowNLPSentiment, load_analyzer
from hub.model import EventKind, Feedback


class Fixed:
    name = "fixed"

    def __init__(self, p: float) -> None:
        self.p = p

    def positive_probability(self, text: str) -> float:
        return self.p


def fb_event(**kw: object):  # type: ignore[no-untyped-def]
    ev = review(rating=None, text=None)
    return ev.model_copy(update={"feedback": Feedback(**kw)})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("feedback", "negative", "severity"),
    [
        ({"rating": Decimal(1)}, True, "high"),
        ({"rating": Decimal(2)}, True, "medium"),
        ({"rating": Decimal(3)}, False, None),
        ({"rating": Decimal(4), "rating_scale": 10}, True, "medium"),  # 2.0 of 5
        ({"rating": Decimal(2), "rating_scale": 10}, True, "high"),  # 1.0 of 5
        ({"rating": Decimal(5), "rating_scale": 10}, False, None),  # 2.5 of 5
        ({"nps": 6}, True, "medium"),
        ({"nps": 7}, False, None),
        ({"nps": 3}, True, "high"),
        ({"csat": 2}, True, "medium"),
        ({"csat": 3}, False, None),
        ({"csat": 1}, True, "high"),
        ({"ces": 5}, True, "medium"),
        ({"ces": 4}, False, None),
        ({"ces": 7}, True, "high"),
        ({"rating": Decimal(5), "text": "门店卖过期牛奶"}, True, "high"),  # alarm keyword beats 5 stars
        ({"text": "我要打12315投诉你们"}, True, "high"),
        ({"text": "电话13812315678 请回电"}, False, None),  # 12315 inside a phone number is not the hotline
        ({"text": "服务太差了，再也不来了"}, True, "low"),  # negative text alone
        ({"text": "很好吃，下次还来"}, False, None),
        ({"rating": Decimal(4), "text": "太差了，等了好久"}, False, None),  # their own good score wins over the model
        ({"rating": Decimal(3), "text": "太差了，等了好久"}, True, "low"),  # a neutral score does not
        ({"nps": 9, "text": "太差了"}, False, None),
        ({"sentiment": -0.9}, True, "low"),  # the source's own sentiment is used as is
        ({"sentiment": 0.5, "text": "太差了太差了"}, False, None),
    ],
)
def test_verdicts(feedback: dict[str, object], negative: bool, severity: str | None) -> None:
    det = Detector(FeedbackConfig(), LexiconSentiment())
    v = det.judge(fb_event(**feedback))
    assert (v.negative, v.severity) == (negative, severity), v.reasons


def test_thresholds_are_configurable() -> None:
    cfg = FeedbackConfig.model_validate({"thresholds": {"rating5_max": 3, "nps_max": 4}})
    det = Detector(cfg, NoSentiment())
    assert det.judge(fb_event(rating=Decimal(3))).negative
    assert not det.judge(fb_event(nps=5)).negative


def test_custom_alarm_keywords_and_kinds() -> None:
    cfg = FeedbackConfig.model_validate({"alarm_keywords": ["蟑螂"], "kinds": ["review"]})
    det = Detector(cfg, NoSentiment())
    assert det.judge(fb_event(text="店里有蟑螂")).severity == "high"
    assert not det.judge(fb_event(text="过期了")).negative  # not in this list
    other = fb_event(rating=Decimal(1)).model_copy(update={"kind": EventKind.transaction})
    assert not det.judge(other).negative  # transactions are not judged here


def test_short_text_is_judged_unless_min_chars_says_otherwise() -> None:
    det = Detector(FeedbackConfig(), Fixed(0.0))
    assert det.judge(fb_event(text="差")).negative  # 差 / 好 / 一般 are answers too
    strict = FeedbackConfig.model_validate({"sentiment": {"min_chars": 4}})
    assert not Detector(strict, Fixed(0.0)).judge(fb_event(text="差")).negative
    assert Detector(strict, Fixed(0.0)).judge(fb_event(text="真的太差")).negative


def test_chat_messages_are_not_judged_on_sentiment_alone() -> None:
    det = Detector(FeedbackConfig(), Fixed(0.0))  # the model would call anything negative
    question = fb_event(text="你好，请问营业时间").model_copy(update={"kind": EventKind.message})
    assert not det.judge(question).negative
    complaint = fb_event(text="我要投诉你们的店员").model_copy(update={"kind": EventKind.message})
    assert det.judge(complaint).severity == "high"  # alarm keywords still count in messages
    scored = fb_event(text="你好", csat=1).model_copy(update={"kind": EventKind.message})
    assert det.judge(scored).negative  # and so do scores
    assert det.judge(fb_event(text="差差差差")).negative  # reviews keep sentiment
    wider = FeedbackConfig.model_validate({"sentiment": {"kinds": ["review", "message"]}})
    assert Detector(wider, Fixed(0.0)).judge(question).negative


def test_no_feedback_is_not_negative() -> None:
    ev = review().model_copy(update={"feedback": None})
    assert not Detector(FeedbackConfig(), Fixed(0.0)).judge(ev).negative


def test_snownlp_ships_its_model() -> None:
    a = SnowNLPSentiment()
    assert a.positive_probability("服务太差了，再也不来了") < 0.25
    assert a.positive_probability("很好吃，服务热情，下次还来") > 0.5


def test_engines_load_by_name_and_import_path() -> None:
    assert load_analyzer("snownlp").name == "snownlp"
    assert load_analyzer("lexicon").name == "lexicon"
    assert load_analyzer("none").positive_probability("差") == 0.5
    assert load_analyzer("hub.features.feedback.sentiment:LexiconSentiment").name == "lexicon"
    with pytest.raises(ConfigError, match="unknown sentiment engine"):
        load_analyzer("bert")
    with pytest.raises(ConfigError, match="cannot load"):
        load_analyzer("no.such.module:Thing")
    with pytest.raises(ConfigError, match="not a SentimentAnalyzer"):
        load_analyzer("hub.features.feedback.config:Thresholds")


@pytest.mark.parametrize(
    ("text", "negative"),
    [("不好吃", True), ("没有热情", True), ("好吃", False), ("一点都不差", False)],
)
def test_lexicon_negation(text: str, negative: bool) -> None:
    assert (LexiconSentiment().positive_probability(text) < 0.5) is negative


# ---------------------------------------------------------------- the feedback model engine

MODEL_DETECTOR = Detector(FeedbackConfig(), load_analyzer("model"))


def test_rating_and_text_together() -> None:
    one_star = MODEL_DETECTOR.judge(fb_event(rating=Decimal(1), text="好评"))
    assert one_star.negative and one_star.severity == "high"  # 1 star with 好评 text is still negative
    five = MODEL_DETECTOR.judge(fb_event(rating=Decimal(5), text="不错但是配送慢"))
    assert not five.negative
    assert [(t.topic, t.polarity) for t in five.topics] == [("delivery", "negative")]  # positive, with an issue
    text_only = MODEL_DETECTOR.judge(fb_event(text="送到的时候饭菜全凉了，汤也洒了一半"))
    assert text_only.severity == "low" and text_only.probability is not None and text_only.probability > 0.5
    assert text_only.why and "凉了" in text_only.why and any("凉了" in r for r in text_only.reasons)


def test_the_question_moves_the_bar() -> None:
    def answer(text: str, question: str | None) -> bool:
        ev = fb_event(text=text)
        if question:
            ev = ev.model_copy(update={"attributes": {"question": question}})
        return MODEL_DETECTOR.judge(ev).negative

    assert not answer("没有", "您觉得哪里需要改进？")
    assert not answer("无。", "还有什么建议吗")
    assert not answer("服务员可以再热情一点", "您觉得哪里需要改进？")
    assert answer("服务员态度太差了，骂人，我要投诉", "您觉得哪里需要改进？")


def test_thresholds_per_source_and_channel() -> None:
    cfg = FeedbackConfig.model_validate({"sentiment": {"by_source": {"reviews": 0.95}, "by_channel": {"x": 0.01}}})
    assert cfg.sentiment.threshold("reviews", "x") == 0.95 and cfg.sentiment.threshold("other", "x") == 0.01
    assert cfg.sentiment.threshold(None, None) == 0.5
    assert FeedbackConfig.model_validate({"sentiment": {"engine": "snownlp"}}).sentiment.threshold() == 0.25
    assert Detector(cfg, load_analyzer("model")).judge(fb_event(text="还可以")).negative
    with pytest.raises(ValueError, match="between 0 and 1"):
        FeedbackConfig.model_validate({"sentiment": {"by_source": {"a": 2}}})


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("", "text not judged: empty text"),
        ("hello there", "text not judged: no Chinese text"),
        ("<p>太难吃了</p>", "HTML removed"),
        ("好吃\ud800", "invalid characters removed"),
        ("很好" * 60_000, "cut to 2000"),
    ],
)
def test_odd_text_gets_a_note_never_an_exception(text: str, note: str) -> None:
    v = MODEL_DETECTOR.judge(fb_event(text=text))
    assert v.note is not None and note in v.note


def test_batches_equal_single_verdicts_and_a_failing_engine_loses_nothing() -> None:
    events = [fb_event(text=t) for t in ("太差了", "很好吃", "配送很慢，饭都凉了", "")]
    batch = MODEL_DETECTOR.judge_many(events)
    assert [v.negative for v in batch] == [MODEL_DETECTOR.judge(e).negative for e in events]

    class Broken:
        name = "broken"

        def positive_probability(self, text: str) -> float:
            raise RuntimeError("engine down")

    v = Detector(FeedbackConfig(), Broken()).judge(fb_event(text="太差了", rating=Decimal(2)))
    assert v.negative and v.severity == "medium" and v.sentiment is None
    assert not Detector(FeedbackConfig(), Broken()).judge(fb_event(text="太差了")).negative
