"""Shared helpers for the post-loop tests (gate, bundle, registry, serving, feedback, report):
a tiny English corpus in a real store, a real lexicon member, and the loop's own step functions
chained in a temporary directory."""

from __future__ import annotations

import json
import random
import sqlite3
import sys
from pathlib import Path

import numpy as np

from sentiloop import convergence, store
from sentiloop.models.base import build_model

CLASSES = ["negative", "neutral", "positive"]
LEX_CONFIG = {
    "strategy": "blend",
    "old_weight": 0.7,
    "min_count": 1,
    "smoothing": 1.0,
    "max_vocab": 5000,
    "seed_lexicon": "none",
    "seed_weight": 0.5,
    "negation": True,
}

_WORDS = {
    "negative": ["awful", "terrible", "hate", "broken", "worst", "angry", "delayed", "rude"],
    "neutral": ["table", "monday", "report", "schedule", "meeting", "train", "weather", "form"],
    "positive": ["love", "great", "wonderful", "happy", "best", "amazing", "thanks", "kind"],
}
_FILLER = ["the", "a", "today", "my", "this", "our", "again", "just"]


def sentence(rng: random.Random, label: str) -> str:
    words = rng.sample(_WORDS[label], 2) + rng.sample(_FILLER, 2)
    rng.shuffle(words)
    return " ".join(words)


def corpus(n_per_class: int = 30, seed: int = 0) -> list[dict]:
    """Rows with ids t0.., a deterministic train/dev/test split (60/20/20)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_per_class * len(CLASSES)):
        label = CLASSES[i % len(CLASSES)]
        split = ("train", "train", "train", "dev", "test")[(i // len(CLASSES)) % 5]
        rows.append(
            {
                "id": f"t{i}",
                "text": sentence(rng, label),
                "label": label,
                "split": split,
                "current_label": label,
                "locked": 0,
            }
        )
    return rows


def write_store(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    store.create_sentences(con)
    con.executemany(
        "INSERT INTO sentences (id, text, label, split, current_label, locked) "
        "VALUES (:id, :text, :label, :split, :current_label, :locked)",
        rows,
    )
    con.commit()
    con.close()
    return path


def split_arrays(rows: list[dict], split: str):
    sel = [r for r in rows if r["split"] == split]
    return [r["text"] for r in sel], np.array([CLASSES.index(r["current_label"]) for r in sel])


def fit_lexicon(rows: list[dict], *, config: dict | None = None, seed: int = 0, labels=None):
    texts, y = split_arrays(rows, "train")
    if labels is not None:
        y = labels
    model = build_model("lexicon", CLASSES, {**LEX_CONFIG, **(config or {})}, language="en", seed=seed)
    return model.fit(texts, y)


def params(**overrides):
    """The settings the stages would read, for a lexicon-only run (conf/'s defaults, with these
    sections changed; nested mappings merged)."""
    from sentiloop.settings import compose_settings

    base = {
        "seed": 7,
        "data": {
            "classes": CLASSES,
            "language": "en",
            "source": "test",
            "path": "unused.csv",
            "max_text_chars": 1000,
            "label_map": {c: c for c in CLASSES},
        },
        "loop": {"max_iterations": 3, "cross_fit": 0, "chunk_size": 16},
        "correction": {"relabel_queue_max": 50},
        "convergence": {
            "min_iterations": 0,
            "label_change_eps": 0.0,
            "dict_change_eps": 0.0,
            "patience": 10,
            "min_delta": 0.0,
            "noise_eps": 0.0,
        },
        "schedule": {"name": "constant", "start": 0.01, "end": 0.01},
        "ensemble": {"members": ["lexicon"], "weights": {"lexicon": 1.0}, "fit_weights": False},
        "models": {"lexicon": dict(LEX_CONFIG)},
        "gate": {"f1_threshold": 0.75, "max_attempts": 3},
        "feedback": {"dir": "data/feedback", "splits": ["train"]},
        "report": {"top_words": 5, "max_token_rows": 1000, "compare": {}},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return compose_settings().merged(base)


def run_loop(root: Path, rows: list[dict], prm, *, feedback_dir: Path | None = None) -> dict:
    """Chain the loop's own step functions (what the DVC stages call) in `root`: it0 store and
    model, then predict/judge/relabel/correct/retrain for every iteration, predict_final, publish."""
    from sentiloop.jsonio import write_json
    from sentiloop.layout import Layout
    from sentiloop.steps import correct, judge, predict, publish, relabel, train

    if feedback_dir is not None:
        prm = prm.merged({"feedback": {"dir": str(feedback_dir)}})
    L = Layout(root)
    n = prm.loop.max_iterations
    write_store(L.store(0), rows)
    write_json(L.state(0), convergence.LoopState(k=0).to_dict())
    train.run(prm, L, "lexicon")
    for k in range(1, n + 1):
        predict.run(prm, L, k)
        judge.run(prm, L, k)
        relabel.run(prm, L, k)
        correct.run(prm, L, k)
        train.retrain(prm, L, k, "lexicon")
    predict.final(prm, L)
    return publish.run(prm, L)


def tool(name: str) -> str:
    """An executable of this venv (dvc, gto), whatever PATH says."""
    return str(Path(sys.executable).parent / name)


def read_json(path: Path):
    return json.loads(Path(path).read_text())
