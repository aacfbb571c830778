"""A tiny finished run in a directory laid out like the repository (params.yaml, data/, metrics/),
with the review summaries of stage review_data: what the app's tests serve."""

from __future__ import annotations

from pathlib import Path

import yaml

import ops_support as S
from sentiloop.layout import Layout
from sentiloop.review_data import build

ITERATIONS = 2


def settings(**overrides):
    return S.params(loop={"max_iterations": ITERATIONS}, **overrides)


def noisy_corpus(n_per_class: int = 30) -> list[dict]:
    """ops_support's corpus with every 5th train row's label flipped to the next class (so the
    loop has labels to correct and the queue has rows it changed)."""
    rows = S.corpus(n_per_class)
    train = [r for r in rows if r["split"] == "train"]
    for r in train[::5]:
        wrong = S.CLASSES[(S.CLASSES.index(r["label"]) + 1) % len(S.CLASSES)]
        r["label"] = r["current_label"] = wrong
    return rows


def make_run(root: Path, *, n_per_class: int = 30):
    """Run the loop (lexicon member) in `root`, write its params.yaml and data/review/."""
    root.mkdir(parents=True, exist_ok=True)
    prm = settings()
    S.run_loop(root, noisy_corpus(n_per_class), prm)
    (root / "params.yaml").write_text(yaml.safe_dump(prm.as_params(), sort_keys=False))
    (root / "data" / "feedback").mkdir(parents=True, exist_ok=True)
    L = Layout(root)
    build(prm, L)
    return prm, L


def rerun_loop_from(prm, L: Layout, k: int = 1) -> None:
    """The next `dvc repro` after new feedback: correct@it<k> onwards (feedback.dir is a dep of
    every correct stage), with the loop's own step functions."""
    from sentiloop.steps import correct, judge, predict, publish, relabel, train

    for i in range(k, prm.loop.max_iterations + 1):
        if i > k:
            predict.run(prm, L, i)
            judge.run(prm, L, i)
            relabel.run(prm, L, i)
        correct.run(prm, L, i)
        train.retrain(prm, L, i, "lexicon")
    predict.final(prm, L)
    publish.run(prm, L)
