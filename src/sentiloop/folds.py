"""Cross-fitting folds (loop.cross_fit = K >= 2): each train row is judged by models fitted
without it, so a model does not simply confirm the labels it memorised."""

from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np


def fold_of(ids: Iterable[str], k: int, seed: int) -> np.ndarray:
    """Stable cross-fitting fold of each id (does not depend on row order or corpus size)."""
    salt = str(seed).encode()
    return np.array([zlib.crc32(salt + str(i).encode()) % k for i in ids], dtype=np.int64)
