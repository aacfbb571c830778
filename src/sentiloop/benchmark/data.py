"""The benchmark corpus: a seeded, binary NSMC subset with planted noise on its train rows.

NSMC's raw file (../shared/data/nsmc/nsmc_reviews.tsv.gz: id, movie_id, document, rating) is
mapped as the published benchmark does: ratings 1-4 negative, 9-10 positive, 5-8 dropped. The
raw ratings are 76% positive once 5-8 are dropped; the published 200k NSMC benchmark is
balanced, so by default the subset takes the same number of rows from each class (so that
symmetric noise and macro-F1 mean what they say). Noise is planted on train rows only; test
rows keep their true labels, which is what test accuracy is scored against.

The frame written for the arms has: id, text, split (train/test), gold (int, scoring only),
noisy (int, what the cleaners see; == gold on test rows), flipped (bool).
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from sentiloop.errors import SentiloopError
from sentiloop.noise import PlantedNoise, plant

CLASSES = ("negative", "positive")
NSMC_FILE = "nsmc_reviews.tsv.gz"
NSMC_ENV = "SENTILOOP_NSMC"
BINARY_MAP = {1: 0, 2: 0, 3: 0, 4: 0, 9: 1, 10: 1}
# conf/data/nsmc3.yaml's classes: 1-4 negative, 5-8 neutral, 9-10 positive
THREE_CLASSES = ("negative", "neutral", "positive")
THREE_MAP = {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1, 9: 2, 10: 2}


class BenchmarkDataError(SentiloopError, RuntimeError):
    pass


def find_nsmc(repo_root: str | Path | None = None) -> Path | None:
    """$SENTILOOP_NSMC, else shared/data/nsmc/ beside the repository (../shared, or further up
    for a git worktree nested one level deeper), else None."""
    env = os.environ.get(NSMC_ENV)
    if env:
        return Path(env)
    root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[3]
    for base in root.resolve().parents:
        candidate = base / "shared" / "data" / "nsmc" / NSMC_FILE
        if candidate.exists():
            return candidate
    return None


def iter_nsmc(path: str | Path, *, chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
    """Stream the raw file as (id, text, rating) chunks; malformed ratings raise with the line."""
    path = Path(path)
    if not path.exists():
        raise BenchmarkDataError(
            f"{path}: no such file (NSMC is expected at ../shared/data/nsmc; set ${NSMC_ENV} to point elsewhere)"
        )
    reader = pd.read_csv(
        path,
        sep="\t",
        quoting=csv.QUOTE_NONE,
        dtype=str,
        keep_default_na=False,
        usecols=["id", "document", "rating"],
        chunksize=chunk_size,
        encoding="utf-8",
    )
    for chunk in reader:
        rating = pd.to_numeric(chunk["rating"], errors="coerce")
        if rating.isna().any():
            bad = chunk.loc[rating.isna(), "rating"].iloc[0]
            raise BenchmarkDataError(f"{path}: rating {bad!r} is not a number")
        yield pd.DataFrame(
            {
                "id": chunk["id"].to_numpy(),
                "text": chunk["document"].to_numpy(),
                "rating": rating.astype(np.int16).to_numpy(),
            }
        )


def load_nsmc_binary(path: str | Path, *, max_rows: int | None = None, mapping: dict | None = None) -> pd.DataFrame:
    """All mappable rows: id, text, gold (class index; binary by default: 0 negative / 1
    positive, or THREE_MAP's three classes); empty texts dropped."""
    mapping = BINARY_MAP if mapping is None else mapping
    parts, seen = [], 0
    for chunk in iter_nsmc(path):
        if max_rows is not None and seen >= max_rows:
            break
        if max_rows is not None:
            chunk = chunk.iloc[: max_rows - seen]
        seen += len(chunk)
        gold = chunk["rating"].map(mapping)
        keep = gold.notna() & (chunk["text"].str.strip() != "")
        parts.append(
            pd.DataFrame(
                {"id": chunk.loc[keep, "id"], "text": chunk.loc[keep, "text"], "gold": gold[keep].astype(np.int64)}
            )
        )
    if not parts:
        raise BenchmarkDataError(f"{path}: no rows")
    return pd.concat(parts, ignore_index=True)


@dataclass
class SubsetSpec:
    n_train: int = 20_000
    n_test: int = 5_000
    seed: int = 13
    balanced: bool = True
    noise_kind: str = "symmetric"  # symmetric | matrix
    noise_rate: float = 0.3
    noise_matrix: list[list[float]] | None = None  # rows = true class, cols = noisy class
    noise_seed: int = 17
    pool_rows: int | None = None  # read only the first N raw rows (tiny runs); None = the whole file
    classes: tuple[str, ...] = field(default=CLASSES)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


def draw_subset(corpus: pd.DataFrame, spec: SubsetSpec) -> pd.DataFrame:
    """Seeded train/test rows (balanced per class by default), test stratified like train."""
    if spec.n_train < 2 or spec.n_test < 1:
        raise BenchmarkDataError(f"need n_train >= 2 and n_test >= 1, got {spec.n_train}/{spec.n_test}")
    rng = np.random.default_rng(spec.seed)
    k = len(spec.classes)
    need = spec.n_train + spec.n_test
    if spec.balanced:
        per_class_train = _split_evenly(spec.n_train, k)
        per_class_test = _split_evenly(spec.n_test, k)
        frames = []
        for c in range(k):
            pool = np.flatnonzero(corpus["gold"].to_numpy() == c)
            want = per_class_train[c] + per_class_test[c]
            if pool.size < want:
                raise BenchmarkDataError(
                    f"class {spec.classes[c]!r} has {pool.size} rows, a balanced subset needs {want}"
                )
            pick = rng.choice(pool, size=want, replace=False)
            part = corpus.iloc[pick].copy()
            part["split"] = ["train"] * per_class_train[c] + ["test"] * per_class_test[c]
            frames.append(part)
        out = pd.concat(frames, ignore_index=True)
    else:
        if len(corpus) < need:
            raise BenchmarkDataError(f"corpus has {len(corpus)} rows, the subset needs {need}")
        pick = rng.choice(len(corpus), size=need, replace=False)
        out = corpus.iloc[pick].copy()
        out["split"] = ["train"] * spec.n_train + ["test"] * spec.n_test
    out = out.iloc[rng.permutation(len(out))].reset_index(drop=True)
    return out[["id", "text", "split", "gold"]]


def _split_evenly(n: int, k: int) -> list[int]:
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def plant_on_train(subset: pd.DataFrame, spec: SubsetSpec) -> tuple[pd.DataFrame, PlantedNoise]:
    """Add `noisy` and `flipped`: noise on train rows only, test rows untouched."""
    out = subset.copy()
    train = (out["split"] == "train").to_numpy()
    planted = plant(
        out.loc[train, "gold"].to_numpy(),
        len(spec.classes),
        kind=spec.noise_kind,
        rate=spec.noise_rate,
        matrix=spec.noise_matrix,
        seed=spec.noise_seed,
    )
    noisy = out["gold"].to_numpy().copy()
    noisy[train] = planted.labels
    out["noisy"] = noisy
    out["flipped"] = out["noisy"] != out["gold"]
    return out, planted


def build_benchmark_frame(nsmc_path: str | Path, spec: SubsetSpec) -> pd.DataFrame:
    mapping = THREE_MAP if len(spec.classes) == 3 else BINARY_MAP
    corpus = load_nsmc_binary(nsmc_path, max_rows=spec.pool_rows, mapping=mapping)
    frame, _ = plant_on_train(draw_subset(corpus, spec), spec)
    return frame
