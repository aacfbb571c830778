"""Scores against gold: how right the training labels are, and how good the corrections were.

A correction is a changed training label (final != noisy). It is right when the new label is
the gold one. Precision = right corrections / corrections; recall = planted errors that end up
repaired / planted errors. For pruning arms the "correction" is a removal: precision = removed
rows that were mislabelled / removed rows, recall = mislabelled rows removed / planted errors,
and label accuracy is over the rows kept.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def _safe_div(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def label_repair(gold, noisy, final, *, kept=None) -> dict:
    """Label accuracy vs gold and precision/recall of the changes (or removals, with `kept`)."""
    gold, noisy, final = (np.asarray(a) for a in (gold, noisy, final))
    if not gold.shape == noisy.shape == final.shape:
        raise ValueError(f"length mismatch: gold {gold.shape}, noisy {noisy.shape}, final {final.shape}")
    wrong = noisy != gold
    if kept is not None:
        kept = np.asarray(kept, dtype=bool)
        removed = ~kept
        return {
            "label_accuracy": _safe_div((final[kept] == gold[kept]).sum(), kept.sum()),
            "n_train": int(kept.sum()),
            "n_corrections": int(removed.sum()),
            "correction_precision": _safe_div((removed & wrong).sum(), removed.sum()),
            "correction_recall": _safe_div((removed & wrong).sum(), wrong.sum()),
        }
    changed = final != noisy
    return {
        "label_accuracy": float((final == gold).mean()) if gold.size else None,
        "n_train": int(gold.size),
        "n_corrections": int(changed.sum()),
        "correction_precision": _safe_div((changed & (final == gold)).sum(), changed.sum()),
        "correction_recall": _safe_div((wrong & (final == gold)).sum(), wrong.sum()),
    }


def score_test_set(gold, pred, n_classes: int) -> dict:
    gold, pred = np.asarray(gold), np.asarray(pred)
    return {
        "test_accuracy": float(accuracy_score(gold, pred)),
        "test_macro_f1": float(f1_score(gold, pred, average="macro", labels=list(range(n_classes)),
                                        zero_division=0)),
    }
