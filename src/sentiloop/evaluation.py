"""Metrics, one definition each: model quality (scikit-learn's), and label quality against gold.

Macro-F1 is always over every class of the task (`labels`), a class absent from both the truth
and the predictions counting 0 (sklearn's zero_division=0), so the loop, the gate and the
benchmarks agree on the same rows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def macro_f1(y_true, y_pred, labels: int | Sequence) -> float:
    """Macro-F1 over `labels` (a class count means the integer classes 0..n-1)."""
    from sklearn.metrics import f1_score  # imported on use: serving does not need sklearn

    labels = list(range(labels)) if isinstance(labels, (int, np.integer)) else list(labels)
    return float(f1_score(np.asarray(y_true), np.asarray(y_pred), labels=labels, average="macro", zero_division=0))


def classification_metrics(y_true, y_pred, labels) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    from sklearn.metrics import accuracy_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred, labels),
        "n": int(len(y_true)),
    }


def _ratio(a, b) -> float | None:
    return float(a) / float(b) if b else None


def label_quality(gold, original, current, *, kept=None) -> dict:
    """How right the training labels are against gold, and how good the changes were.

    A correction is a row whose current label differs from the original: precision = corrections
    that now match gold / corrections; recall = noisy rows (original != gold) that now match
    gold / noisy rows; broken = corrections of rows that were right. With `kept` (a pruning
    method), the "corrections" are the removed rows: precision = removed rows that were noisy /
    removed rows, recall = noisy rows removed / noisy rows, and accuracy is over the kept rows.
    A ratio with nothing to divide by (no rows, no corrections, no noise) is None.
    """
    gold, orig, cur = (np.asarray(a) for a in (gold, original, current))
    if not gold.shape == orig.shape == cur.shape:
        raise ValueError(f"length mismatch: gold {gold.shape}, original {orig.shape}, current {cur.shape}")
    noisy = orig != gold
    if kept is not None:
        kept = np.asarray(kept, dtype=bool)
        removed = ~kept
        return {
            "label_accuracy": _ratio((cur[kept] == gold[kept]).sum(), kept.sum()),
            "original_label_accuracy": _ratio((~noisy).sum(), gold.size),
            "n_train": int(kept.sum()),
            "corrections": int(removed.sum()),
            "correction_precision": _ratio((removed & noisy).sum(), removed.sum()),
            "correction_recall": _ratio((removed & noisy).sum(), noisy.sum()),
            "broken": int((removed & ~noisy).sum()),
        }
    changed = orig != cur
    fixed = changed & (cur == gold)
    return {
        "label_accuracy": _ratio((cur == gold).sum(), gold.size),
        "original_label_accuracy": _ratio((~noisy).sum(), gold.size),
        "n_train": int(gold.size),
        "corrections": int(changed.sum()),
        "correction_precision": _ratio(fixed.sum(), changed.sum()),
        "correction_recall": _ratio((noisy & (cur == gold)).sum(), noisy.sum()),
        "broken": int((changed & ~noisy).sum()),
    }
