"""Split: a held-out test split the loop never corrects, a dev split for model selection,
and the train split the loop refines. Stratified by the original label and seeded.

How, and why this way: each class's rows are ordered by a seeded hash of their id, and the first
`test quota` of them go to test, the next `dev quota` to dev, the rest to train. The quotas are the
class's share of the totals scikit-learn's `train_test_split` would draw (ceil(test_size * n), then
ceil of the dev fraction of the rest), apportioned by largest remainder, so every class is split in
the same proportions. The ordering runs inside SQLite (a window function over a registered hash
function; SQLite sorts on disk), so the split stage's memory does not grow with the corpus, and the
split depends only on the seed and the set of (id, label) pairs, not on the order rows were ingested in.
`assign_splits` is the same algorithm in memory, for callers that hold ids and labels anyway.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from sentiloop import store
from sentiloop.errors import SentiloopError


class SplitError(SentiloopError, ValueError):
    pass


# The benchmark sets this (sentiloop.benchmark.loop_arm.fixed_splits) to give every arm the same
# id -> split assignment; None in the pipeline.
FIXED_ASSIGNMENT: Mapping[str, str] | None = None


def split_hash(seed: int, id_: str) -> int:
    """Seeded 63-bit hash of an id: the order rows are drawn in, within their class."""
    digest = hashlib.blake2b(f"{int(seed)}:{id_}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _validate(test_size: float, dev_size: float) -> None:
    if not (0 < test_size < 1 and 0 <= dev_size < 1 and test_size + dev_size < 1):
        raise SplitError(f"need 0 < test_size, 0 <= dev_size and test_size + dev_size < 1; got {test_size}, {dev_size}")


def _apportion(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split `total` over classes in proportion to `sizes` (largest remainder, ties by name)."""
    n = sum(sizes.values())
    if n == 0 or total == 0:
        return {c: 0 for c in sizes}
    exact = {c: total * s / n for c, s in sizes.items()}
    out = {c: min(int(math.floor(e)), sizes[c]) for c, e in exact.items()}
    left = total - sum(out.values())
    for c in sorted(sizes, key=lambda c: (-(exact[c] - math.floor(exact[c])), c)):
        if left <= 0:
            break
        if out[c] < sizes[c]:
            out[c] += 1
            left -= 1
    return out


def quotas(class_sizes: dict[str, int], test_size: float, dev_size: float) -> dict[str, tuple[int, int]]:
    """Per class (test rows, dev rows)."""
    _validate(test_size, dev_size)
    n = sum(class_sizes.values())
    n_test = int(math.ceil(test_size * n))
    rest = n - n_test
    n_dev = int(math.ceil(dev_size / (1 - test_size) * rest)) if dev_size > 0 else 0
    if n_test < 1 or rest - n_dev < 1:
        raise SplitError(
            f"with {n} rows, test_size={test_size} and dev_size={dev_size} leave "
            f"{rest - n_dev} train and {n_test} test rows: need at least one of each"
        )
    test = _apportion(n_test, class_sizes)
    dev = _apportion(n_dev, {c: class_sizes[c] - test[c] for c in class_sizes})
    return {c: (test[c], dev[c]) for c in class_sizes}


def assign_splits(ids: np.ndarray, labels: np.ndarray, test_size: float, dev_size: float, seed: int) -> np.ndarray:
    """The split of each row, in memory; `split_store` computes the same inside SQLite."""
    _validate(test_size, dev_size)
    ids = [str(i) for i in ids]
    labels = [str(x) for x in labels]
    sizes: dict[str, int] = {}
    for lab in labels:
        sizes[lab] = sizes.get(lab, 0) + 1
    q = quotas(sizes, test_size, dev_size)
    split = np.full(len(ids), "train", dtype=object)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    for lab, rows in by_class.items():
        rows.sort(key=lambda i: (split_hash(seed, ids[i]), ids[i]))
        n_test, n_dev = q[lab]
        for rank, i in enumerate(rows):
            split[i] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return split


def split_store(
    in_db: Path,
    out_db: Path,
    *,
    test_size: float,
    dev_size: float,
    seed: int,
    chunk_size: int = 5000,
    assignment: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Copy the ingested store and add split/current_label/locked; returns rows per split.

    `assignment` (or `FIXED_ASSIGNMENT`): an explicit id -> split mapping instead of drawing one."""
    _validate(test_size, dev_size)
    assignment = assignment if assignment is not None else FIXED_ASSIGNMENT
    with store.atomic_db(out_db, copy_from=in_db) as con:
        con.execute("PRAGMA temp_store = FILE")
        con.execute("CREATE TEMP TABLE s (id TEXT PRIMARY KEY, split TEXT NOT NULL)")
        if assignment is not None:
            _insert_assignment(con, assignment, chunk_size)
        else:
            sizes = {str(lab): int(c) for lab, c in con.execute("SELECT label, COUNT(*) FROM sentences GROUP BY label")}
            q = quotas(sizes, test_size, dev_size)
            con.execute("CREATE TEMP TABLE q (label TEXT PRIMARY KEY, n_test INTEGER, n_dev INTEGER)")
            con.executemany("INSERT INTO q VALUES (?, ?, ?)", [(c, t, d) for c, (t, d) in q.items()])
            con.create_function("split_hash", 1, lambda i: split_hash(seed, str(i)), deterministic=True)
            con.execute(
                "INSERT INTO s (id, split) SELECT r.id, CASE WHEN r.rn <= q.n_test THEN 'test' "
                "WHEN r.rn <= q.n_test + q.n_dev THEN 'dev' ELSE 'train' END "
                "FROM (SELECT id, CAST(label AS TEXT) AS label, ROW_NUMBER() OVER "
                "(PARTITION BY label ORDER BY split_hash(id), id) AS rn FROM sentences) AS r "
                "JOIN q ON q.label = r.label"
            )
        con.execute(
            "UPDATE sentences SET split = s.split, current_label = label, locked = 0 FROM s WHERE s.id = sentences.id"
        )
        con.execute("CREATE INDEX IF NOT EXISTS sentences_split ON sentences (split)")
        counts = {str(v): int(c) for v, c in con.execute("SELECT split, COUNT(*) FROM sentences GROUP BY split")}
    return counts


def _insert_assignment(con, assignment: Mapping[str, str], chunk_size: int) -> None:
    """Look up every stored id's split in `assignment`; an id it lacks is an error."""
    cur = con.execute("SELECT id FROM sentences ORDER BY rowid")
    while True:
        ids = [r[0] for r in cur.fetchmany(chunk_size)]
        if not ids:
            break
        try:
            rows = [(i, str(assignment[str(i)])) for i in ids]
        except KeyError as e:
            raise SplitError(f"id {e.args[0]} was ingested but has no split in the given assignment") from None
        con.executemany("INSERT INTO s VALUES (?, ?)", rows)
