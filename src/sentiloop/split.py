"""Split: a held-out test split the loop never corrects, a dev split for model selection,
and the train split the loop refines. Stratified by the original label and seeded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from sentiloop import store


class SplitError(ValueError):
    pass


def assign_splits(ids: np.ndarray, labels: np.ndarray, test_size: float, dev_size: float,
                  seed: int) -> np.ndarray:
    if not (0 < test_size < 1 and 0 <= dev_size < 1 and test_size + dev_size < 1):
        raise SplitError(f"need 0 < test_size, 0 <= dev_size and test_size + dev_size < 1; "
                         f"got {test_size}, {dev_size}")
    n = len(ids)
    idx = np.arange(n)
    counts = np.unique(labels, return_counts=True)[1]
    stratify = labels if counts.min() >= 2 else None
    rest, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=stratify)
    split = np.full(n, "train", dtype=object)
    split[test] = "test"
    if dev_size > 0:
        strat_rest = labels[rest] if stratify is not None else None
        _, dev = train_test_split(rest, test_size=dev_size / (1 - test_size), random_state=seed + 1,
                                  stratify=strat_rest)
        split[dev] = "dev"
    return split


def split_store(in_db: Path, out_db: Path, *, test_size: float, dev_size: float, seed: int,
                chunk_size: int = 5000) -> dict[str, int]:
    """Copy the ingested store and add split/current_label/locked; returns rows per split."""
    frame = store.read_column_values(in_db, ["id", "label"], chunk_size=chunk_size)
    split = assign_splits(frame["id"].to_numpy(), frame["label"].to_numpy(), test_size, dev_size, seed)
    with store.atomic_db(out_db, copy_from=in_db) as con:
        con.execute("CREATE TEMP TABLE s (id TEXT PRIMARY KEY, split TEXT)")
        con.executemany("INSERT INTO s VALUES (?, ?)", zip(frame["id"], split))
        con.execute("UPDATE sentences SET split = (SELECT split FROM s WHERE s.id = sentences.id), "
                    "current_label = label, locked = 0")
        con.execute("CREATE INDEX IF NOT EXISTS sentences_split ON sentences (split)")
    values, counts = np.unique(split, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
