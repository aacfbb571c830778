"""Plant label noise with a known seed, so a benchmark knows the answer.

A planted-noise benchmark takes a corpus whose labels are (taken as) right, corrupts a known
share of them, runs a cleaner, and scores the cleaned labels against the originals (the gold
labels). Two noise models, as in the label-noise literature (and cleanlab's benchmarking
helpers):

- symmetric: each class loses exactly `round(rate * n_class)` rows, each flipped to one of the
  other classes uniformly at random;
- class-conditional: a noise matrix `T[true, noisy]` (rows = true class, columns = noisy class,
  each row sums to 1) says what share of each true class ends up labelled as each class.

Counts are realised exactly (largest remainder per row), not sampled row by row, so a seeded
run flips the same rows every time and the realised matrix matches the requested one up to
rounding (one row per cell). Note the orientation: cleanlab's `noise_matrix` is the transpose
(columns = true class); `realised_matrix(...).T` compares against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sentiloop.errors import SentiloopError

ROW_SUM_TOLERANCE = 1e-6


class NoiseError(SentiloopError, ValueError):
    """Invalid noise parameters (rate, matrix, labels)."""


@dataclass(frozen=True)
class PlantedNoise:
    """The noisy labels and which rows were flipped (noisy != true exactly where `flipped`)."""

    labels: np.ndarray  # int64 (n,)
    flipped: np.ndarray  # bool (n,)

    @property
    def n_flipped(self) -> int:
        return int(self.flipped.sum())

    @property
    def rate(self) -> float:
        return float(self.flipped.mean()) if len(self.flipped) else 0.0


def _check_labels(labels, n_classes: int) -> np.ndarray:
    if int(n_classes) != n_classes or n_classes < 2:
        raise NoiseError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise NoiseError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise NoiseError(f"labels must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise NoiseError(f"labels must lie in [0, {n_classes}), got range [{arr.min()}, {arr.max()}]")
    return arr


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not np.isfinite(rate) or not 0.0 <= rate < 1.0:
        raise NoiseError(f"noise rate must be in [0, 1), got {rate!r}")
    return rate


def check_noise_matrix(matrix, n_classes: int | None = None) -> np.ndarray:
    """Validate T[true, noisy]: square, finite, non-negative, rows summing to 1."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise NoiseError(f"noise matrix must be square (true x noisy), got shape {m.shape}")
    if m.shape[0] < 2:
        raise NoiseError("noise matrix needs at least two classes")
    if n_classes is not None and m.shape[0] != n_classes:
        raise NoiseError(f"noise matrix is {m.shape[0]}x{m.shape[1]} but there are {n_classes} classes")
    if not np.all(np.isfinite(m)) or (m < 0).any():
        raise NoiseError("noise matrix entries must be finite and >= 0")
    sums = m.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad.size:
        raise NoiseError(
            f"each row of the noise matrix (a true class) must sum to 1; rows "
            f"{bad.tolist()} sum to {np.round(sums[bad], 6).tolist()}"
        )
    return m


def symmetric_matrix(n_classes: int, rate: float) -> np.ndarray:
    """T with 1 - rate on the diagonal and rate spread evenly over the other classes."""
    rate = check_rate(rate)
    if int(n_classes) != n_classes or n_classes < 2:
        raise NoiseError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    m = np.full((n_classes, n_classes), rate / (n_classes - 1))
    np.fill_diagonal(m, 1.0 - rate)
    return m


def _allocate(n: int, shares: np.ndarray) -> np.ndarray:
    """Split n items by shares into integer counts summing to n (largest remainder)."""
    raw = shares * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    if short > 0:
        # stable order: ties go to the lower class index
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def plant_matrix(labels, matrix, *, seed: int) -> PlantedNoise:
    """Relabel each true class c by row c of T[true, noisy]; exact counts, seeded choice."""
    m = check_noise_matrix(matrix)
    k = m.shape[0]
    true = _check_labels(labels, k)
    rng = np.random.default_rng(seed)
    noisy = true.copy()
    for c in range(k):
        idx = np.flatnonzero(true == c)
        if idx.size == 0:
            continue
        counts = _allocate(idx.size, m[c])
        targets = np.repeat(np.arange(k), counts)
        noisy[rng.permutation(idx)] = targets
    return PlantedNoise(labels=noisy, flipped=noisy != true)


def plant_symmetric(labels, n_classes: int, rate: float = 0.3, *, seed: int) -> PlantedNoise:
    """Flip exactly round(rate * n_c) rows of every class c to another class, uniformly.

    With two classes this is the classic "flip 30% of the labels"; with more, the flipped rows
    of a class are spread over the other classes as evenly as the counts allow.
    """
    rate = check_rate(rate)
    true = _check_labels(labels, n_classes)
    rng = np.random.default_rng(seed)
    noisy = true.copy()
    for c in range(n_classes):
        idx = np.flatnonzero(true == c)
        n_flip = int(round(rate * idx.size))
        if n_flip == 0:
            continue
        chosen = rng.choice(idx, size=n_flip, replace=False)
        others = np.array([j for j in range(n_classes) if j != c])
        # even spread, then shuffled so which row gets which wrong class is random
        targets = others[np.arange(n_flip) % others.size]
        noisy[chosen] = rng.permutation(targets)
    return PlantedNoise(labels=noisy, flipped=noisy != true)


def realised_matrix(true, noisy, n_classes: int) -> np.ndarray:
    """The empirical T[true, noisy]; a class absent from `true` gets an identity row."""
    t = _check_labels(true, n_classes)
    y = _check_labels(noisy, n_classes)
    if t.shape != y.shape:
        raise NoiseError(f"true and noisy labels differ in length: {t.size} vs {y.size}")
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (t, y), 1)
    totals = counts.sum(axis=1, keepdims=True)
    out = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    empty = totals[:, 0] == 0
    out[empty] = np.eye(n_classes)[empty]
    return out


def plant(
    labels, n_classes: int, *, kind: str = "symmetric", rate: float = 0.3, matrix=None, seed: int
) -> PlantedNoise:
    """One entry point for configs: kind 'symmetric' (rate) or 'matrix' (T[true, noisy])."""
    if kind == "symmetric":
        return plant_symmetric(labels, n_classes, rate, seed=seed)
    if kind == "matrix":
        if matrix is None:
            raise NoiseError("kind='matrix' needs a noise matrix (rows = true, cols = noisy)")
        return plant_matrix(labels, check_noise_matrix(matrix, n_classes), seed=seed)
    raise NoiseError(f"unknown noise kind {kind!r}; use 'symmetric' or 'matrix'")


def plant_into_store(ingested_db, gold_db, classes: list[str], *, rate: float, matrix, seed: int) -> dict:
    """Plant noise into an ingested store (data.noise): its labels become the gold labels
    (gold_db, which the loop never reads), the store gets the noisy ones. Returns what was planted."""
    from sentiloop import store

    k = len(classes)
    index = {c: i for i, c in enumerate(classes)}
    frame = store.read_column_values(ingested_db, ["id", "label"], chunk_size=50_000)
    true = frame["label"].map(index).to_numpy()
    planted = (
        plant_matrix(true, check_noise_matrix(matrix, k), seed=seed)
        if matrix is not None
        else plant_symmetric(true, k, rate, seed=seed)
    )
    names = np.asarray(classes, dtype=object)
    noisy = names[planted.labels]
    with store.atomic_db(gold_db) as g:
        g.execute("CREATE TABLE gold (id TEXT PRIMARY KEY, gold_label TEXT NOT NULL)")
        g.executemany("INSERT INTO gold VALUES (?, ?)", zip(frame["id"].astype(str), frame["label"].astype(str)))
    with store.atomic_db(ingested_db, copy_from=ingested_db) as con:
        con.executemany(
            "UPDATE sentences SET label = ? WHERE id = ?",
            ((str(n), str(i)) for n, i, f in zip(noisy, frame["id"], planted.flipped) if f),
        )
    return {
        "planted": int(planted.n_flipped),
        "planted_rate": round(planted.rate, 6),
        "planted_matrix": [[round(float(v), 4) for v in row] for row in realised_matrix(true, planted.labels, k)],
    }


def restore_test_labels(store_db, gold_db) -> int:
    """Give the test split its true labels back: a planted-noise run scores on clean labels."""
    import pandas as pd

    from sentiloop import store

    parts = list(store.iter_chunks(gold_db, ["id", "gold_label"], table="gold", chunk_size=50_000))
    if not parts:
        return 0
    gold = pd.concat(parts, ignore_index=True)
    with store.atomic_db(store_db, copy_from=store_db) as con:
        con.execute("CREATE TEMP TABLE g (id TEXT PRIMARY KEY, gold_label TEXT)")
        con.executemany("INSERT INTO g VALUES (?, ?)", gold.itertuples(index=False, name=None))
        cur = con.execute(
            "UPDATE sentences SET label = (SELECT gold_label FROM g WHERE g.id = sentences.id), "
            "current_label = (SELECT gold_label FROM g WHERE g.id = sentences.id) "
            "WHERE split = 'test' AND id IN (SELECT id FROM g) AND label != "
            "(SELECT gold_label FROM g WHERE g.id = sentences.id)"
        )
        return cur.rowcount
