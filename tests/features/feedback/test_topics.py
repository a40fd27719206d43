"""Topic tagging: the shipped taxonomy, polarity per clause, spans, extra words, routing by topic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ConfigError
from hub.features.feedback.config import FeedbackConfig
from hub.features.feedback.detection import Detector
from hub.features.feedback.routing import RouteFacts, rule_matches
from hub.features.feedback.sentiment import ModelSentiment
from hub.features.feedback.topics import TopicTagger, load_taxonomy, word_pattern

MODEL = ModelSentiment()


def tagger() -> TopicTagger:
    return TopicTagger(load_taxonomy(), MODEL.negative_probabilities)


def test_the_default_taxonomy_covers_retail_and_restaurants() -> None:
    names = {t.name for t in load_taxonomy()}
    for wanted in (
        "服务态度",
        "价格",
        "口味/新鲜度",
        "食品安全",
        "配送/物流",
        "环境/卫生",
        "商品质量",
        "排队/效率",
        "售后",
    ):
        assert wanted in names


def test_each_topic_has_its_own_polarity_and_span() -> None:
    [tags] = tagger().tag_many(["味道不错，就是配送太慢了"])
    by = {t.topic: t for t in tags}
    assert by["taste"].polarity == "positive" and by["taste"].span == "味道不错"
    assert by["delivery"].polarity == "negative" and by["delivery"].span == "就是配送太慢了"
    assert "味道不错，就是配送太慢了"[by["taste"].start : by["taste"].end] == "味道"
    assert by["delivery"].as_dict()["name"] == "配送/物流"


def test_food_safety_and_no_topic() -> None:
    safety, nothing = tagger().tag_many(["吃完拉肚子了", "嗯"])
    assert [t.topic for t in safety] == ["food_safety"] and safety[0].polarity == "negative"
    assert nothing == []


def test_extra_words_and_a_custom_taxonomy(tmp_path: Path) -> None:
    topics = load_taxonomy(extra={"delivery": ["闪送"]})
    [tags] = TopicTagger(topics, MODEL.negative_probabilities).tag_many(["闪送小哥迟到了"])
    assert [t.topic for t in tags] == ["delivery"]
    with pytest.raises(ConfigError, match="unknown topic 'parking'"):
        load_taxonomy(extra={"parking": ["停车"]})
    own = tmp_path / "topics.yaml"
    own.write_text("topics:\n  noise: {name: 噪音, words: [吵, 噪音]}\n", encoding="utf-8")
    [tags] = TopicTagger(load_taxonomy(own), MODEL.negative_probabilities).tag_many(["楼下太吵"])
    assert [(t.topic, t.name) for t in tags] == [("noise", "噪音")]
    own.write_text("not: a taxonomy\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a topic taxonomy"):
        load_taxonomy(own)


def test_detector_puts_topics_on_the_verdict_and_relative_taxonomy_paths(tmp_path: Path) -> None:
    from kit.cases import review

    (tmp_path / "mine.yaml").write_text("topics:\n  queue: {name: 排队, words: [排队]}\n", encoding="utf-8")
    cfg = FeedbackConfig.model_validate({"topics": {"taxonomy": "mine.yaml"}})
    det = Detector(cfg, MODEL, config_dir=tmp_path)
    v = det.judge(review(rating=5, text="排队太久了"))
    assert not v.negative and v.topic_ids == ["queue"] and v.topics[0].polarity == "negative"
    off = Detector(FeedbackConfig.model_validate({"topics": {"enabled": False}}), MODEL)
    assert off.judge(review(rating=1, text="配送太慢")).topics == []


def test_routing_by_topic() -> None:
    cfg = FeedbackConfig.model_validate(
        {
            "contacts": {"qa": {"endpoints": [{"destination": "d"}]}},
            "routing": [{"name": "food-safety", "when": {"topic": "food_safety"}, "notify": ["qa"]}],
        }
    )
    rule = cfg.routing[0]
    assert rule_matches(rule, RouteFacts(topics=["food_safety", "taste"]))
    assert not rule_matches(rule, RouteFacts(topics=["delivery"]))


_ALPHABET = st.sampled_from(list("服务态度员价格贵菜(.)*+?a"))


@settings(max_examples=300, deadline=None)
@given(st.sets(st.text(_ALPHABET, min_size=1, max_size=4), min_size=1, max_size=12), st.text(_ALPHABET, max_size=40))
def test_the_word_trie_finds_what_the_longest_first_alternation_finds(words: set[str], text: str) -> None:
    """Words sharing prefixes (服务, 服务员, 服务态度), regex metacharacters: the same matches."""
    plain = re.compile("|".join(sorted(map(re.escape, words), key=len, reverse=True)))
    trie = re.compile(word_pattern(words))
    assert [(m.start(), m.group()) for m in trie.finditer(text)] == [
        (m.start(), m.group()) for m in plain.finditer(text)
    ]


# ---------------------------------------------------------------- learning from staff's topic verdicts


def test_a_word_staff_keep_rejecting_stops_naming_the_topic() -> None:
    from hub.features.feedback.topics import learn_word_trust

    decor = "装修很有格调，菜也好吃"  # a restaurant's decor: the taxonomy says facilities and hygiene
    verdicts = [(decor, {"facilities"}), (decor, {"facilities"}), ("酒店装修很新，房间很大", set())]
    trust = learn_word_trust(tagger(), verdicts)
    assert trust.counts[("facilities", "装修")] == [1, 2] and trust.counts[("hygiene", "装修")] == [3, 0]
    assert trust.verdicts == 3 and trust.unreliable() == {("facilities", "装修")}
    # one rejection is not enough, nor as many rejections as confirmations
    assert not learn_word_trust(tagger(), verdicts[:1]).unreliable()
    assert not learn_word_trust(tagger(), [*verdicts, *verdicts[2:] * 2]).unreliable()


def test_an_unreliable_word_is_skipped_but_the_topic_is_still_found_by_another() -> None:
    skipping = TopicTagger(load_taxonomy(), MODEL.negative_probabilities, {("facilities", "装修")})
    assert {t.topic for t in skipping.tag_many(["装修很有格调"])[0]} == {"hygiene"}
    [tags] = skipping.tag_many(["装修一般，房间太小了"])
    assert [(t.topic, t.span) for t in tags if t.topic == "facilities"] == [("facilities", "房间太小了")]
    assert {t.topic for t in tagger().tag_many(["装修很有格调"])[0]} == {"facilities", "hygiene"}


def test_word_trust_round_trips_and_a_bad_file_is_named(tmp_path: Path) -> None:
    from hub.features.feedback.topics import TRUST_FILE, WordTrust, load_word_trust

    assert load_word_trust(tmp_path) is None and load_word_trust(None) is None
    WordTrust({("facilities", "装修"): [0, 3], ("price", "钱"): [4, 1]}, verdicts=7).save(tmp_path)
    loaded = load_word_trust(tmp_path)
    assert loaded is not None and loaded.verdicts == 7 and loaded.unreliable() == {("facilities", "装修")}
    (tmp_path / TRUST_FILE).write_text('{"words": [{"topic": "price"}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match=TRUST_FILE + ".*not a topic word-trust file"):
        load_word_trust(tmp_path)


def test_the_detector_tags_with_the_word_trust_of_the_model_in_use(tmp_path: Path) -> None:
    import shutil

    from hub.features.feedback.textmodel import SHIPPED
    from hub.features.feedback.topics import WordTrust

    shutil.copytree(SHIPPED, tmp_path / "v1")
    WordTrust({("facilities", "装修"): [0, 2]}, verdicts=2).save(tmp_path / "v1")
    learned = Detector(FeedbackConfig(), ModelSentiment(tmp_path / "v1"))
    shipped = Detector(FeedbackConfig(), MODEL)
    assert learned.tagger is not None and shipped.tagger is not None
    assert learned.tagger.unreliable == {("facilities", "装修")} and not shipped.tagger.unreliable
    assert {t.topic for t in learned.tagger.tag_many(["装修很有格调"])[0]} == {"hygiene"}
