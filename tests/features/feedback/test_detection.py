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
