"""Tokenization by language: Kiwi morphemes for Korean, a regex tokenizer for English.

Negation is folded into the tokens ("not_good") because a bag of words cannot see word order:
English marks the words after a negator up to the next punctuation; Korean marks the word after
a pre-verbal 안/못 and the word before a post-verbal 않다/못하다.
Kiwi is loaded once per process, and only when Korean text is tokenized (it takes ~3 s).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterable, Iterator, Sequence

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_REPEAT = re.compile(r"(.)\1{2,}")
_EN_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]|[:;=][\-']?[()dpDP]")
_EN_NEGATORS = frozenset(
    {
        "not",
        "no",
        "never",
        "nothing",
        "nobody",
        "none",
        "neither",
        "nor",
        "without",
        "cannot",
        "dont",
        "didnt",
        "doesnt",
        "isnt",
        "wasnt",
        "arent",
        "werent",
        "wont",
        "cant",
        "couldnt",
        "shouldnt",
        "wouldnt",
        "aint",
        "hardly",
    }
)
_EN_CLAUSE_END = frozenset({"!", "?", "but", "however"})
_KO_KEEP_PREFIX = ("NN", "VV", "VA", "VX", "MAG", "XR", "SL", "SN", "IC", "MM", "W_EMOJI", "SW")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return _REPEAT.sub(r"\1\1", text)


def _english(text: str, negation: bool) -> list[str]:
    raw = _EN_TOKEN.findall(normalize(text).lower().replace("n't", "nt").replace("’", "'"))
    if not negation:
        return raw
    out, negated = [], False
    # punctuation that ends a negation scope is removed by the regex, so scope is also capped
    span = 0
    for tok in raw:
        if tok in _EN_CLAUSE_END:
            negated = False
            out.append(tok)
            continue
        if tok in _EN_NEGATORS:
            negated, span = True, 0
            out.append(tok)
            continue
        if negated and span < 3:
            out.append("not_" + tok)
            span += 1
        else:
            negated = False
            out.append(tok)
    return out


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def _korean_tokens(tokens, negation: bool) -> list[str]:
    words: list[str] = []
    negate_next = False
    for t in tokens:
        tag = t.tag
        form = t.form
        if form in ("안", "못") and tag == "MAG":
            negate_next = True
            continue
        if tag == "VX" and form in ("않", "못하") and words:
            if negation and not words[-1].startswith("not_"):
                words[-1] = "not_" + words[-1]
            continue
        if not tag.startswith(_KO_KEEP_PREFIX) and form not in ("!", "?"):
            continue
        word = f"{form}/{tag[:2]}"
        if negate_next and negation:
            word = "not_" + word
            negate_next = False
        words.append(word)
    return words


def tokenize(text: str, language: str = "en", *, negation: bool = True) -> list[str]:
    if language == "ko":
        return _korean_tokens(_kiwi().tokenize(normalize(text)), negation)
    return _english(text, negation)


def tokenize_many(texts: Iterable[str], language: str = "en", *, negation: bool = True) -> Iterator[list[str]]:
    """Tokenize a stream; Korean goes through Kiwi's batched API, which is much faster.

    Korean tokens are served from the active token cache when there is one (see token_cache.py:
    Kiwi is the bottleneck of every member, so a run tokenizes each text once).
    """
    if language == "ko":
        from sentiloop.text.token_cache import active_cache

        cache = active_cache()
        if cache is not None:
            yield from _cached_many(cache, texts, language, negation)
            return
    yield from _tokenize_many_uncached(texts, language, negation)


_CACHE_CHUNK = 5000


def _cached_many(cache, texts: Iterable[str], language: str, negation: bool) -> Iterator[list[str]]:
    def fresh(batch):
        return _tokenize_many_uncached(batch, language, negation)

    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) >= _CACHE_CHUNK:
            yield from cache.tokenize(batch, language, negation, fresh)
            batch = []
    if batch:
        yield from cache.tokenize(batch, language, negation, fresh)


def _tokenize_many_uncached(texts: Iterable[str], language: str, negation: bool) -> Iterator[list[str]]:
    if language == "ko":
        texts = [normalize(t) for t in texts]
        for toks in _kiwi().tokenize(texts):
            yield _korean_tokens(toks, negation)
    else:
        for t in texts:
            yield _english(t, negation)


def tokenize_list(texts: Sequence[str], language: str = "en", *, negation: bool = True) -> list[list[str]]:
    return list(tokenize_many(texts, language, negation=negation))
