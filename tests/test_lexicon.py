"""The lexicon member: probabilities, persistence, and seed 001's blend strategy."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_corpus
from sentiloop.models import build_model, load_model
from sentiloop.models.base import ModelError
from sentiloop.models.lexicon import LexiconModel
from sentiloop.settings import member_config


def cfg(**kw):
    """conf/models/lexicon's config with `kw` changed (defaults live in conf/ only)."""
    return member_config("lexicon", **kw)


CLASSES = ["negative", "positive"]


@pytest.fixture(scope="module")
def data():
    return synthetic_corpus(600, seed=1)


def test_probabilities_sum_to_one_and_separate_classes(data):
    texts, y = data
    m = build_model("lexicon", CLASSES, cfg(seed_lexicon="none")).fit(texts, y)
    p = m.predict_proba(texts)
    assert p.shape == (600, 2) and np.allclose(p.sum(axis=1), 1)
    assert (p.argmax(axis=1) == y).mean() > 0.95


def test_save_load_gives_identical_predictions(data, tmp_path):
    texts, y = data
    m = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none"})).fit(texts, y)
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, LexiconModel)
    np.testing.assert_array_equal(again.predict_proba(texts), m.predict_proba(texts))


def test_blend_keeps_seventy_percent_of_old_scores(data):
    texts, y = data
    old = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none"})).fit(texts, y)
    scratch = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none", "strategy": "scratch"})).fit(
        texts, 1 - y, init_from=old
    )
    blend = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none", "old_weight": 0.7})).fit(texts, 1 - y, init_from=old)
    w = "great"
    i_old, i_new, i_b = old.words_.index(w), scratch.words_.index(w), blend.words_.index(w)
    expected = 0.7 * old.scores_[i_old] + 0.3 * scratch.scores_[i_new]
    np.testing.assert_allclose(blend.scores_[i_b], expected, rtol=1e-5)
    assert blend.strategy_ == "blend" and scratch.strategy_ == "scratch"
    # a full flip of the labels flips a from-scratch dictionary; the blend resists it
    assert scratch.dict_change_rate_ > 0.5 and blend.dict_change_rate_ < scratch.dict_change_rate_


def test_new_domain_words_enter_above_min_count(data):
    texts, y = data
    old = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none", "min_count": 3})).fit(texts, y)
    new_texts = texts + ["zorgle movie"] * 3 + ["blip film"] * 2
    new_y = np.concatenate([y, [1, 1, 1, 0, 0]])
    new = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none", "min_count": 3})).fit(new_texts, new_y, init_from=old)
    assert "zorgle" in new.words_ and "blip" not in new.words_


def test_vader_seed_gives_english_polarity_without_training_signal():
    texts = ["the movie", "a film", "the plot", "a scene"] * 10
    y = np.array([0, 1] * 20)
    m = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "auto", "seed_weight": 1.0})).fit(texts, y)
    assert "horrible" in m.words_  # seeded, never seen in training
    s = m.scores_[m.words_.index("horrible")]
    assert s[0] > s[1]


def test_negation_flips_the_word(data):
    texts, y = data
    m = LexiconModel(CLASSES, cfg(**{"seed_lexicon": "none"})).fit(
        texts + ["not great"] * 5, np.concatenate([y, [0] * 5])
    )
    assert "not_great" in m.words_


def test_errors_are_clear(data, tmp_path):
    texts, y = data
    with pytest.raises(ModelError, match="not fitted"):
        LexiconModel(CLASSES, cfg()).predict_proba(["x"])
    with pytest.raises(ModelError, match="labels"):
        LexiconModel(CLASSES).fit(texts[:3], y[:2])
    with pytest.raises(ModelError, match="model.json"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="unknown model kind"):
        build_model("svm", CLASSES, {})
