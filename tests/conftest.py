"""Shared fixtures: tiny corpora with known labels, and params composed from conf/ as users get them."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

POS = ["great", "love", "wonderful", "excellent", "happy", "amazing", "best", "fantastic", "enjoyed", "brilliant"]
NEG = ["awful", "hate", "terrible", "boring", "worst", "sad", "horrible", "waste", "disappointing", "poor"]
FILLER = [
    "the",
    "movie",
    "film",
    "plot",
    "actor",
    "story",
    "scene",
    "music",
    "ending",
    "cast",
    "today",
    "really",
    "quite",
    "very",
    "and",
    "was",
    "is",
    "this",
    "that",
    "with",
]


def synthetic_corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Binary sentences whose class shows in 1-2 sentiment words among fillers (0=neg, 1=pos)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], rng.integers(0, 2, size=n)
    for y in labels:
        words = list(rng.choice(FILLER, size=rng.integers(4, 9)))
        lexicon = POS if y == 1 else NEG
        for _ in range(rng.integers(1, 3)):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(lexicon)))
        texts.append(" ".join(words))
    return texts, labels


def plant_flips(labels: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly round(rate * n) binary labels, chosen with a known seed."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    flip = np.zeros(n, dtype=bool)
    flip[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    return np.where(flip, 1 - labels, labels), flip


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def base_params() -> dict:
    """params.yaml as committed (composed from conf/ with the defaults)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def schedule(name: str, start: float, end: float, max_drift: float | None = 0.02):
    """A typed schedule section (what the correction functions take)."""
    from sentiloop.settings.loop import Schedule

    return Schedule(name=name, start=start, end=end, max_drift=max_drift)


def tiny_data(path, *, gold: bool = True) -> dict:
    """The data section of a binary CSV test corpus (id, text, label[, gold]): every key of
    conf/data/file.yaml, so a test repository's conf/data/tiny.yaml or a params tree is complete."""
    return {
        **yaml.safe_load((ROOT / "conf/data/file.yaml").read_text()),
        "source": "file",
        "path": str(path),
        "format": "csv",
        "encoding_errors": "strict",
        "id_column": "id",
        "gold_column": "gold" if gold else None,
        "max_text_chars": 500,
    }


def tiny_params(
    base: dict,
    csv_path: Path,
    *,
    gold: bool = True,
    iterations: int = 3,
    schedule: dict | None = None,
    members: list[str] | None = None,
    **loop,
) -> dict:
    p = copy.deepcopy(base)
    p["data"] = tiny_data(csv_path, gold=gold)
    p["loop"] = {**p["loop"], "max_iterations": iterations, "chunk_size": 257, **loop}
    p["models"]["lexicon"] = {**p["models"]["lexicon"], "seed_lexicon": "none", "min_count": 2}
    p["ensemble"]["members"] = members or ["lexicon"]
    p["schedule"] = {"max_drift": 0.02, **(schedule or {"name": "linear", "start": 0.66, "end": 0.6})}
    p["convergence"] = {
        "min_iterations": 0,
        "label_change_eps": 0.0,
        "dict_change_eps": 0.0,
        "patience": 10,
        "noise_eps": 0.0,
        "min_delta": 0.0,
    }
    return p  # a params tree: pipeline.run_loop validates it and derives the iteration chain


@pytest.fixture
def noisy_corpus(tmp_path) -> tuple[Path, np.ndarray]:
    texts, gold = synthetic_corpus(1500, seed=7)
    noisy, flipped = plant_flips(gold, 0.30, seed=11)
    names = np.array(["negative", "positive"])
    rows = [
        {"id": f"s{i}", "text": t, "label": names[y], "gold": names[g]}
        for i, (t, y, g) in enumerate(zip(texts, noisy, gold))
    ]
    return write_csv(tmp_path / "noisy.csv", rows), flipped
