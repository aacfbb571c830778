"""The token cache: same tokens as Kiwi, each text tokenized once, read-only respected."""

import importlib

import pytest

from sentiloop.text.token_cache import ENV_VAR, TokenCache, active_cache, use_token_cache

tk = importlib.import_module("sentiloop.text.tokenize")  # the module (sentiloop.text.tokenize is also a function)

TEXTS = ["이 영화 정말 재밌었다", "진짜 별로였다 안 재밌어", "이 영화 정말 재밌었다", "최고!"]


@pytest.fixture
def counting(monkeypatch):
    """Count the texts that reach the real (uncached) tokenizer."""
    calls = []
    real = tk._tokenize_many_uncached

    def spy(texts, language, negation):
        texts = list(texts)
        calls.extend(texts)
        return real(texts, language, negation)

    monkeypatch.setattr(tk, "_tokenize_many_uncached", spy)
    return calls


def test_cached_tokens_equal_uncached_and_each_text_is_tokenized_once(tmp_path, counting):
    expected = list(tk._tokenize_many_uncached(TEXTS, "ko", True))
    counting.clear()
    with use_token_cache(tmp_path / "tok.sqlite") as cache:
        first = tk.tokenize_list(TEXTS, "ko")
        assert first == expected
        assert counting == ["이 영화 정말 재밌었다", "진짜 별로였다 안 재밌어", "최고!"]
        counting.clear()
        again = tk.tokenize_list(TEXTS[::-1], "ko")
        assert again == expected[::-1]
        assert counting == []
        assert cache.hits == 4 and cache.misses == 4
        assert len(cache) == 3
    # persisted: a new cache on the same file serves hits without tokenizing
    with use_token_cache(tmp_path / "tok.sqlite", readonly=True):
        assert tk.tokenize_list(TEXTS, "ko") == expected
    assert counting == []


def test_negation_setting_is_part_of_the_key(tmp_path):
    text = ["안 재밌어"]
    with use_token_cache(tmp_path / "tok.sqlite"):
        with_neg = tk.tokenize_list(text, "ko", negation=True)
        without = tk.tokenize_list(text, "ko", negation=False)
    assert with_neg == list(tk._tokenize_many_uncached(text, "ko", True))
    assert without == list(tk._tokenize_many_uncached(text, "ko", False))
    assert with_neg != without


def test_readonly_cache_tokenizes_misses_but_stores_nothing(tmp_path, counting):
    path = tmp_path / "tok.sqlite"
    TokenCache(path).close()
    with use_token_cache(path, readonly=True) as cache:
        tk.tokenize_list(["새로운 문장"], "ko")
        tk.tokenize_list(["새로운 문장"], "ko")
        assert len(cache) == 0
    assert counting == ["새로운 문장", "새로운 문장"]


def test_readonly_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no token cache"):
        with use_token_cache(tmp_path / "absent.sqlite", readonly=True):
            pass


def test_english_bypasses_the_cache(tmp_path):
    with use_token_cache(tmp_path / "tok.sqlite") as cache:
        assert tk.tokenize_list(["not good at all"], "en") == [["not", "not_good", "not_at", "not_all"]]
        assert cache.hits == cache.misses == 0


def test_environment_variable_activates_a_cache(tmp_path, monkeypatch):
    import sentiloop.text.token_cache as tc

    monkeypatch.setattr(tc, "_active", None)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.sqlite"))
    cache = active_cache()
    try:
        assert cache is not None and cache.path == tmp_path / "env.sqlite"
        tk.tokenize_list(["좋아요"], "ko")
        assert len(cache) == 1
    finally:
        cache.close()
        monkeypatch.setattr(tc, "_active", None)


def test_long_streams_are_served_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(tk, "_CACHE_CHUNK", 2)
    texts = [f"영화 {i}점" for i in range(5)]
    with use_token_cache(tmp_path / "tok.sqlite") as cache:
        assert tk.tokenize_list(texts, "ko") == list(tk._tokenize_many_uncached(texts, "ko", True))
        assert cache.misses == 5
