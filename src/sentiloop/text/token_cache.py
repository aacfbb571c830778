"""An on-disk token cache, so a corpus is tokenized once per run, not once per model per step.

Why: Kiwi tokenizes ~1,300-1,700 Korean sentences/s on this 2-core machine, while every member
needs tokens at every fit and every predict of every iteration. Scoring a lexicon over tokens
runs at tens of thousands of sentences/s; tokenizing again each time is what made it slow.

The cache is an SQLite file: one row per distinct (language, negation, text), keyed by a 64-bit
BLAKE2b hash, tokens joined by U+001F. Lookups go in batches, so memory stays flat in corpus
size (the cache is never loaded whole). It is opt-in and transparent: while a cache is active
(`use_token_cache(path)` or the SENTILOOP_TOKEN_CACHE environment variable),
`sentiloop.text.tokenize.tokenize_many` serves hits from it and tokenizes only the misses
(stored unless the cache is read-only). Changing the tokenizer's code invalidates nothing by
itself: bump TOKENIZER_VERSION (part of the key) when token output changes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

TOKENIZER_VERSION = 1
ENV_VAR = "SENTILOOP_TOKEN_CACHE"
SEP = "\x1f"
_BATCH = 900  # keys per IN (...) query: under the 999-variable limit of SQLite < 3.32

_active: "TokenCache | None" = None


def _key(text: str, language: str, negation: bool) -> int:
    h = hashlib.blake2b(
        f"{TOKENIZER_VERSION}\x1e{language}\x1e{int(negation)}\x1e{text}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(h, "little", signed=True)


class TokenCache:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.hits = 0
        self.misses = 0
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"{self.path}: no token cache")
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute("CREATE TABLE IF NOT EXISTS tokens (key INTEGER PRIMARY KEY, tokens TEXT NOT NULL)")
            self._con.commit()

    def close(self) -> None:
        self._con.close()

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])

    def lookup(self, keys: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, str] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), _BATCH):
            part = uniq[i : i + _BATCH]
            q = f"SELECT key, tokens FROM tokens WHERE key IN ({','.join('?' * len(part))})"
            found.update(self._con.execute(q, part).fetchall())
        return {k: (v.split(SEP) if v else []) for k, v in found.items()}

    def store(self, items: Sequence[tuple[int, list[str]]]) -> None:
        if self.readonly or not items:
            return
        self._con.executemany(
            "INSERT OR IGNORE INTO tokens (key, tokens) VALUES (?, ?)", [(k, SEP.join(t)) for k, t in items]
        )
        self._con.commit()

    def tokenize(
        self, texts: Sequence[str], language: str, negation: bool, tokenizer: Callable[[list[str]], Iterator[list[str]]]
    ) -> list[list[str]]:
        """Tokens for `texts` in order: hits from the file, misses from `tokenizer` (then stored)."""
        keys = [_key(t, language, negation) for t in texts]
        found = self.lookup(keys)
        miss_idx = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(miss_idx)
        self.misses += len(miss_idx)
        if miss_idx:
            # a text repeated inside the batch is tokenized once
            first: dict[int, int] = {}
            for i in miss_idx:
                first.setdefault(keys[i], i)
            order = list(first.values())
            new = list(tokenizer([texts[i] for i in order]))
            fresh = {keys[i]: toks for i, toks in zip(order, new)}
            self.store(list(fresh.items()))
            found.update(fresh)
        return [found[k] for k in keys]


def active_cache() -> TokenCache | None:
    """The cache in use: set by use_token_cache(), else opened from $SENTILOOP_TOKEN_CACHE."""
    global _active
    if _active is None:
        env = os.environ.get(ENV_VAR)
        if env:
            _active = TokenCache(env)
    return _active


@contextmanager
def use_token_cache(path: str | Path, *, readonly: bool = False) -> Iterator[TokenCache]:
    global _active
    previous = _active
    cache = TokenCache(path, readonly=readonly)
    _active = cache
    try:
        yield cache
    finally:
        _active = previous
        cache.close()
