"""Metrics: model quality on dev/test, and label quality against gold when it is known."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(y_true, y_pred, labels) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "n": int(len(y_true))}


def label_quality(frame: pd.DataFrame) -> dict[str, float]:
    """`frame`: id, label (original), current_label, gold_label over the train split.

    label_accuracy: share of current labels equal to gold. A correction is a row whose current
    label differs from the original: precision = corrections that now match gold / corrections;
    recall = noisy rows (original != gold) that now match gold / noisy rows.
    """
    if len(frame) == 0:
        return {}
    orig, cur, gold = frame["label"].to_numpy(), frame["current_label"].to_numpy(), frame["gold_label"].to_numpy()
    changed = orig != cur
    noisy = orig != gold
    fixed = changed & (cur == gold)
    return {
        "label_accuracy": float(np.mean(cur == gold)),
        "original_label_accuracy": float(np.mean(orig == gold)),
        "corrections": int(changed.sum()),
        "correction_precision": float(fixed.sum() / changed.sum()) if changed.any() else float("nan"),
        "correction_recall": float(fixed.sum() / noisy.sum()) if noisy.any() else float("nan"),
        "broken": int((changed & (orig == gold)).sum()),
    }
