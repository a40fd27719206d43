"""Alarm keywords: matched as words, not as substrings, and not under negation.

A keyword in ``feedback.alarm_keywords`` escalates a touchpoint (severity high); it is not the main
detector. A hit is dropped when

- it sits inside a longer word that means something else (媒体 in 多媒体, 曝光 in 曝光度, 过期 in
  过期不候): :data:`INSIDE_WORDS`, and for every keyword, a letter or digit glued to an ASCII one
  (12315 in 123156);
- it is negated in its clause (没有过期, 并未变质, 不是假货, 无异物): :data:`NEGATORS` just before it;
- the clause says the business received or handled it (接到您的投诉, 已处理投诉): :data:`NOT_A_COMPLAINT`.

Segmenting with jieba would find word boundaries too, but its dictionary takes 2-12 s to load and
~50 MB; the few hundred false hits that matter are listed here and tested
(``tests/features/feedback/test_keywords.py`` holds the known false hits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: longer words that contain a keyword but are not that alarm
INSIDE_WORDS: dict[str, tuple[str, ...]] = {
    "媒体": ("多媒体", "流媒体", "媒体播放", "融媒体"),
    "曝光": ("曝光度", "曝光补偿", "曝光过度", "曝光不足", "过曝", "欠曝", "长曝光"),
    "过期": ("过期不候", "不过期", "防过期"),
    "虫子": ("虫子草", "毛毛虫子"),
    "工商": ("工商银行", "工商局注册", "工商管理", "工商注册"),
    "骗": ("骗子手机",),
    "律师": ("律师事务所旁", "律师楼"),
    "受伤": ("受伤的心",),
    "变质": ("变质期",),
    "异物": ("异物感",),
}
NEGATORS = ("没有", "没", "并未", "未", "不是", "不会", "无", "并没有", "从未", "不算", "没发现", "没见")
NOT_A_COMPLAINT = re.compile(r"(接到|收到|处理|感谢|受理)(您|你|了)?(的|们的)?$")
_CLAUSE_END = re.compile(r"[，,。.！!？?；;\n]")
_ASCII_WORD = re.compile(r"[0-9A-Za-z]")


@dataclass(frozen=True)
class KeywordHit:
    """One alarm keyword found as a word, and where."""

    keyword: str
    start: int
    end: int


class AlarmKeywords:
    """Finds the configured alarm keywords in a text as words (see the module docstring)."""

    def __init__(self, keywords: list[str]):
        self.keywords = [k for k in dict.fromkeys(k.strip() for k in keywords) if k]
        self._pattern = (
            re.compile("|".join(sorted(map(re.escape, self.keywords), key=len, reverse=True)), re.IGNORECASE)
            if self.keywords
            else None
        )

    def find(self, text: str) -> list[KeywordHit]:
        """The keywords of ``text`` that count (each keyword once, first place it counts)."""
        if self._pattern is None or not text:
            return []
        hits: dict[str, KeywordHit] = {}
        for m in self._pattern.finditer(text):
            keyword = self._canonical(m.group(0))
            if keyword in hits or not self._counts(text, m.start(), m.end(), keyword):
                continue
            hits[keyword] = KeywordHit(keyword, m.start(), m.end())
        return list(hits.values())

    def _canonical(self, found: str) -> str:
        low = found.lower()
        return next((k for k in self.keywords if k.lower() == low), found)

    def _counts(self, text: str, start: int, end: int, keyword: str) -> bool:
        if _ASCII_WORD.match(keyword[0]) and start > 0 and _ASCII_WORD.match(text[start - 1]):
            return False
        if _ASCII_WORD.match(keyword[-1]) and end < len(text) and _ASCII_WORD.match(text[end]):
            return False
        for word in INSIDE_WORDS.get(keyword, ()):
            offset = word.find(keyword)
            s = start - offset
            if s >= 0 and text[s : s + len(word)] == word:
                return False
        clause_start = 0
        for m in _CLAUSE_END.finditer(text, 0, start):
            clause_start = m.end()
        before = text[clause_start:start].rstrip()
        if any(before.endswith(n) for n in NEGATORS):
            return False
        # 没有发现过期 / 没有吃出虫子: a negator up to four characters before, in the same clause
        near = before[-6:]
        if any(n in near for n in ("没有", "并未", "没发现", "并没有")) and not near.endswith(("了", "还")):
            return False
        return not NOT_A_COMPLAINT.search(before)
