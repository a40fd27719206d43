"""Alarm keywords are words, not substrings, and not under negation; the known false hits stay fixed."""

from __future__ import annotations

import pytest

from hub.features.feedback.config import DEFAULT_ALARM_KEYWORDS
from hub.features.feedback.keywords import AlarmKeywords

KEYWORDS = AlarmKeywords(DEFAULT_ALARM_KEYWORDS)

#: texts where a keyword is a substring but not the alarm (seen in real reviews and replies)
KNOWN_FALSE_HITS = [
    "没有过期，日期很新鲜",
    "生产日期很新，没过期",
    "检查了一下，并未变质",
    "不是假货，专柜验过了",
    "多媒体教室的投影很清楚",
    "流媒体会员送了一个月",
    "照片曝光度刚好，相机不错",
    "您好，接到您的投诉后我们已经处理",
    "收到你的投诉，非常抱歉",
    "在工商银行旁边，很好找",
    "电话13812315678，请回电",
    "订单号 123156 已发货",
    "没有发现异物，放心吃",
    "无异物，包装完好",
]

#: texts that must raise the alarm, with the keyword that does
TRUE_HITS = [
    ("买的牛奶过期了", "过期"),
    ("吃完食物中毒进了医院", "食物中毒"),
    ("饭里吃出虫子，我要报警", "吃出虫子"),
    ("我要打12315", "12315"),
    ("我要投诉你们店员", "投诉"),
    ("肉已经变质了", "变质"),
    ("这是假货吧", "假货"),
    ("要去媒体曝光你们", "媒体"),
    ("没想到会吃出虫子", "吃出虫子"),
]


@pytest.mark.parametrize("text", KNOWN_FALSE_HITS)
def test_known_false_hits_do_not_raise_the_alarm(text: str) -> None:
    assert KEYWORDS.find(text) == [], text


@pytest.mark.parametrize(("text", "keyword"), TRUE_HITS)
def test_complaints_raise_the_alarm(text: str, keyword: str) -> None:
    assert keyword in [h.keyword for h in KEYWORDS.find(text)]


def test_hits_carry_their_place_and_count_once() -> None:
    [hit] = AlarmKeywords(["过期"]).find("过期了，真的过期了")
    assert (hit.keyword, hit.start, hit.end) == ("过期", 0, 2)


def test_no_keywords_and_odd_input() -> None:
    assert AlarmKeywords([]).find("过期") == []
    assert AlarmKeywords(["", " "]).find("过期") == []
    assert KEYWORDS.find("") == []
    assert KEYWORDS.find("Ａ" * 100_000) == []


def test_latin_keywords_are_case_insensitive_and_whole() -> None:
    kw = AlarmKeywords(["CCTV"])
    assert [h.keyword for h in kw.find("要找cctv曝光")] == ["CCTV"]
    assert kw.find("xcctvx") == []
