import numpy as np
import pytest

from sentiloop.models.vocab import OOV_ID, PAD_ID, VocabError, Vocabulary, vocabulary_for
from sentiloop.settings import member_config


def test_build_orders_by_frequency_then_token_and_respects_max_vocab():
    v = Vocabulary.build(["b a a", "c a b", "d"], max_vocab=4, max_len=5)
    assert v.tokens == ["<pad>", "<oov>", "a", "b"]
    assert v.index["a"] == 2 and PAD_ID == 0 and OOV_ID == 1
    # rebuilding from the same texts gives the same ids (LSTM and BiLSTM share them)
    assert Vocabulary.build(["b a a", "c a b", "d"], max_vocab=4, max_len=5) == v


def test_min_count_drops_rare_tokens():
    v = Vocabulary.build(["x y", "x z"], min_count=2, max_len=4)
    assert "x" in v.index and "y" not in v.index


def test_encode_pads_truncates_and_maps_unknown_words():
    v = Vocabulary.build(["good movie", "bad movie"], max_len=3)
    pre = v.encode(["good movie", "unknownword", "", "good good good good"])
    assert pre.dtype == np.int32 and pre.shape == (4, 3)
    assert list(pre[0]) == [PAD_ID, v.index["good"], v.index["movie"]]
    assert list(pre[1]) == [PAD_ID, PAD_ID, OOV_ID]
    assert list(pre[2]) == [PAD_ID] * 3
    assert list(pre[3]) == [v.index["good"]] * 3
    post, lens = v.encode(["good movie", ""], padding="post", return_lengths=True)
    assert list(post[0]) == [v.index["good"], v.index["movie"], PAD_ID]
    assert list(lens) == [2, 0]


def test_negation_is_folded_into_tokens():
    v = Vocabulary.build(["not good", "good"], max_len=4)
    assert "not_good" in v.index and "good" in v.index


def test_save_load_round_trip(tmp_path):
    v = Vocabulary.build(["좋은 영화", "나쁜 영화"], language="ko", max_len=6)
    v.save(tmp_path)
    w = Vocabulary.load(tmp_path)
    assert w == v and w.language == "ko"
    assert np.array_equal(w.encode(["좋은 영화"]), v.encode(["좋은 영화"]))
    assert any(t.startswith("영화") for t in v.tokens)  # Kiwi morphemes, not whitespace words


def test_bad_settings_and_files_fail_clearly(tmp_path):
    with pytest.raises(VocabError):
        Vocabulary.build(["a"], max_vocab=2)
    with pytest.raises(VocabError):
        Vocabulary(["a"], max_len=0)
    with pytest.raises(VocabError):
        Vocabulary(["a"], language="fr")
    with pytest.raises(VocabError):
        Vocabulary(["a"]).encode("one string")
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(VocabError, match="cannot read"):
        Vocabulary.load(tmp_path)


def test_vocabulary_for_prefers_previous_then_file_then_builds(tmp_path):
    prev = Vocabulary.build(["old words only"], max_len=4)
    cfg = member_config("lstm")
    v, src = vocabulary_for(cfg, ["new words"], "en", prev)
    assert v is prev and src == "previous"
    path = tmp_path / "v.json"
    prev.save(path)
    v, src = vocabulary_for({**cfg, "vocab_path": str(path)}, ["new words"], "en")
    assert src == "file" and v == prev
    with pytest.raises(VocabError, match="'en' vocabulary"):
        vocabulary_for({**cfg, "vocab_path": str(path)}, ["x"], "ko")
    v, src = vocabulary_for({**cfg, "max_len": 7, "min_count": 1}, ["new words"], "en")
    assert src == "built" and v.max_len == 7 and "new" in v.index


def test_tokenize_cache_gives_the_same_tokens_even_when_it_overflows(monkeypatch):
    from sentiloop.models import vocab as vmod
    from sentiloop.text.tokenize import tokenize_list

    texts = [f"not good movie {i}" for i in range(10)] + ["not good movie 1"]
    monkeypatch.setattr(vmod, "TOKEN_CACHE_MAX", 4)
    monkeypatch.setattr(vmod, "_TOKEN_CACHE", {})
    assert vmod.tokenize_cached(texts, "en", True) == tokenize_list(texts, "en")
    monkeypatch.setattr(vmod, "TOKEN_CACHE_MAX", 100)
    assert vmod.tokenize_cached(texts, "en", True) == tokenize_list(texts, "en")
    assert vmod.tokenize_cached(texts[:3], "en", True) == tokenize_list(texts[:3], "en")


def test_tokenize_memo_is_a_bounded_lru(monkeypatch):
    from sentiloop.models import vocab as vmod
    from sentiloop.text.tokenize import tokenize_list

    monkeypatch.setattr(vmod, "TOKEN_CACHE_MAX", 3)
    monkeypatch.setattr(vmod, "_TOKEN_CACHE", {})
    vmod.tokenize_cached(["a b", "c d", "e f"], "en", True)
    vmod.tokenize_cached(["a b"], "en", True)  # touch: now the most recent
    assert vmod.tokenize_cached(["g h"], "en", True) == tokenize_list(["g h"], "en")
    memo = vmod._TOKEN_CACHE[("en", True)]
    assert list(memo) == ["e f", "a b", "g h"]  # "c d", least recently used, evicted
    many = [f"word{i} not bad" for i in range(10)]
    assert vmod.tokenize_cached(many, "en", True) == tokenize_list(many, "en")
    assert len(memo) == 3
