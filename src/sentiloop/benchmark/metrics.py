"""Scores against gold: how right the training labels are, and how good the corrections were.

A correction is a changed training label (final != noisy). It is right when the new label is
the gold one. Precision = right corrections / corrections; recall = planted errors that end up
repaired / planted errors. For pruning arms the "correction" is a removal: precision = removed
rows that were mislabelled / removed rows, recall = mislabelled rows removed / planted errors,
and label accuracy is over the rows kept.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score

from sentiloop.evaluation import label_quality, macro_f1


def label_repair(gold, noisy, final, *, kept=None) -> dict:
    """Label accuracy vs gold and precision/recall of the changes (or removals, with `kept`):
    sentiloop.evaluation.label_quality under the benchmark tables' names."""
    q = label_quality(gold, noisy, final, kept=kept)
    return {
        "label_accuracy": q["label_accuracy"],
        "n_train": q["n_train"],
        "n_corrections": q["corrections"],
        "correction_precision": q["correction_precision"],
        "correction_recall": q["correction_recall"],
    }


def score_test_set(gold, pred, n_classes: int) -> dict:
    gold, pred = np.asarray(gold), np.asarray(pred)
    return {"test_accuracy": float(accuracy_score(gold, pred)), "test_macro_f1": macro_f1(gold, pred, n_classes)}
