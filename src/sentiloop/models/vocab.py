"""The token vocabulary shared by the LSTM and BiLSTM members.

Why one vocabulary, fixed after iteration 0: the BiLSTM's retraining strategy freezes its
embedding layer (seed 001), which only makes sense if token id 17 means the same word in every
iteration. So the vocabulary is built once from the iteration-0 train texts, saved next to each
model as `vocab.json`, and every later fit reuses the previous model's vocabulary instead of
building a new one. Building is deterministic (count desc, then token asc), so the LSTM and the
BiLSTM built from the same train texts with the same settings get the same ids.

Ids: 0 = PAD, 1 = OOV, then tokens by frequency. `encode` truncates to `max_len` tokens and pads
with 0, after the tokens ("post", for packed sequences in PyTorch) or before them ("pre", so a
unidirectional LSTM reads the real tokens last and needs no mask).
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sentiloop.errors import SentiloopError
from sentiloop.text.tokenize import tokenize_many

# Per-process memo of tokenizations: the LSTM and the BiLSTM (and every epoch's dev set) tokenize
# the same texts, and Kiwi does ~1-2k Korean sentences/s on 2 cores, so it pays to do it once.
# It is a bounded LRU, not a corpus-sized dict: what repeats within a process is the dev set (every
# epoch) and the chunk both recurrent members just tokenized, while a predict pass over the whole
# corpus sees every text once, so a large memo only grows with the corpus (300,000 entries cost
# ~290 MiB at 712k NSMC rows) without hits; the on-disk token cache (`sentiloop.text.token_cache`)
# is what makes a second pass cheap. 20,000 entries (~20 MiB) hold a typical dev set.
_TOKEN_CACHE: dict[tuple[str, bool], "OrderedDict[str, list[str]]"] = {}
TOKEN_CACHE_MAX = 20_000  # entries per (language, negation); least recently used evicted first

PAD = "<pad>"
OOV = "<oov>"
PAD_ID = 0
OOV_ID = 1
VOCAB_FILE = "vocab.json"


class VocabError(SentiloopError, ValueError):
    """Bad vocabulary settings or an unreadable vocabulary file."""


class Vocabulary:
    """Token -> id mapping plus the tokenizer settings needed to reproduce the ids."""

    def __init__(self, tokens: Sequence[str], *, language: str = "en", max_len: int = 48, negation: bool = True):
        if max_len < 1:
            raise VocabError(f"max_len must be >= 1, got {max_len}")
        if language not in ("en", "ko"):
            raise VocabError(f"language must be 'en' or 'ko', got {language!r}")
        tokens = list(tokens)
        if tokens[:2] != [PAD, OOV]:
            tokens = [PAD, OOV] + [t for t in tokens if t not in (PAD, OOV)]
        if len(set(tokens)) != len(tokens):
            raise VocabError("vocabulary has duplicate tokens")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.language = language
        self.max_len = int(max_len)
        self.negation = bool(negation)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.to_dict() == other.to_dict()

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        language: str = "en",
        max_vocab: int = 20000,
        min_count: int = 1,
        max_len: int = 48,
        negation: bool = True,
    ) -> "Vocabulary":
        """Keep the `max_vocab - 2` most frequent tokens seen at least `min_count` times."""
        if max_vocab < 3:
            raise VocabError(f"max_vocab must be >= 3 (PAD, OOV and one token), got {max_vocab}")
        counts: Counter[str] = Counter()
        for toks in tokenize_cached(list(texts), language, negation):
            counts.update(toks)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count and t not in (PAD, OOV)), key=lambda t: (-counts[t], t)
        )[: max_vocab - 2]
        return cls([PAD, OOV] + kept, language=language, max_len=max_len, negation=negation)

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return tokenize_cached(texts, self.language, self.negation)

    def encode_tokens(
        self, token_lists: Sequence[Sequence[str]], *, padding: str = "pre", return_lengths: bool = False
    ):
        """Ids for already tokenized texts: int32 (n, max_len) [, int64 lengths]."""
        if padding not in ("pre", "post"):
            raise VocabError(f"padding must be 'pre' or 'post', got {padding!r}")
        n, L = len(token_lists), self.max_len
        out = np.zeros((n, L), dtype=np.int32)
        lengths = np.zeros(n, dtype=np.int64)
        get = self.index.get
        for i, toks in enumerate(token_lists):
            ids = [get(t, OOV_ID) for t in toks[:L]]
            k = len(ids)
            lengths[i] = k
            if k:
                if padding == "post":
                    out[i, :k] = ids
                else:
                    out[i, L - k :] = ids
        return (out, lengths) if return_lengths else out

    def encode(self, texts: Sequence[str], *, padding: str = "pre", return_lengths: bool = False):
        """Tokenize and map to ids; unknown tokens -> OOV_ID, padding -> PAD_ID."""
        if isinstance(texts, str):
            raise VocabError("encode() takes a sequence of texts, not one string")
        return self.encode_tokens(self.tokenize(texts), padding=padding, return_lengths=return_lengths)

    def oov_rate(self, texts: Sequence[str]) -> float:
        toks = [t for ts in self.tokenize(texts) for t in ts]
        return float(np.mean([t not in self.index for t in toks])) if toks else 0.0

    # --- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"language": self.language, "max_len": self.max_len, "negation": self.negation, "tokens": self.tokens}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        try:
            d = json.loads(path.read_text())
            return cls(d["tokens"], language=d["language"], max_len=d["max_len"], negation=d.get("negation", True))
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise VocabError(f"cannot read vocabulary {path}: {e}") from e


def tokenize_cached(texts: Sequence[str], language: str, negation: bool) -> list[list[str]]:
    """`tokenize_many`, memoised per process in a bounded LRU; misses are tokenized in one batch."""
    cache = _TOKEN_CACHE.setdefault((language, negation), OrderedDict())
    if not isinstance(cache, OrderedDict):  # tests may install a plain dict
        cache = _TOKEN_CACHE[(language, negation)] = OrderedDict(cache)
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    fresh = dict(zip(missing, tokenize_many(missing, language, negation=negation))) if missing else {}
    out = []
    for t in texts:
        toks = fresh.get(t)
        if toks is None:
            toks = cache[t]
            cache.move_to_end(t)
        out.append(toks)
    limit = max(int(TOKEN_CACHE_MAX), 0)
    for t, toks in fresh.items():
        cache[t] = toks
        cache.move_to_end(t)
    while len(cache) > limit:
        cache.popitem(last=False)
    return out


def vocabulary_for(
    config: dict, texts: Sequence[str], language: str, previous: "Vocabulary | None" = None
) -> tuple["Vocabulary", str]:
    """The vocabulary a fit should use, and where it came from.

    Order: the previous iteration's (ids must stay stable), else a file named by
    `config["vocab_path"]` if it exists, else built from `texts` with the config's settings.
    """
    if previous is not None:
        return previous, "previous"
    path = config["vocab_path"]
    if path and Path(path).exists():
        vocab = Vocabulary.load(path)
        if vocab.language != language:
            raise VocabError(f"{path} is a {vocab.language!r} vocabulary, data is {language!r}")
        return vocab, "file"
    # negation marking is not a choice for the sequence members: their vocabulary always marks it
    vocab = Vocabulary.build(
        texts,
        language=language,
        max_vocab=config["max_vocab"],
        min_count=config["min_count"],
        max_len=config["max_len"],
        negation=True,
    )
    return vocab, "built"
