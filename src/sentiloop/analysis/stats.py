"""The numbers of the bias report: class drift, corrections per class, overturned original
labels, member agreement per class, and the mitigation flag with per-class caps."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd


def member_names(predictions: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Members with a full set of p_<member>_<class> columns (the ensemble 'ens' excluded)."""
    found = []
    last = f"_{classes[-1]}"
    for col in predictions.columns:
        if col.startswith("p_") and col.endswith(last):
            m = col[2 : -len(last)]
            if m != "ens" and all(f"p_{m}_{c}" in predictions.columns for c in classes):
                found.append(m)
    return found


def _shares(series: pd.Series, classes: Sequence[str]) -> tuple[dict, dict]:
    counts = series.value_counts()
    n = max(1, len(series))
    return ({c: int(counts.get(c, 0)) for c in classes}, {c: float(counts.get(c, 0)) / n for c in classes})


def class_drift(original: pd.Series, current: pd.Series, classes: Sequence[str]) -> dict[str, float]:
    """current share - original share, per class (positive = the class grew)."""
    _, o = _shares(original, classes)
    _, c = _shares(current, classes)
    return {k: c[k] - o[k] for k in classes}


def bias_stats(
    labels: pd.DataFrame,
    classes: Sequence[str],
    *,
    changes: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None,
    max_drift: float = 0.05,
    split: str | None = "train",
) -> dict[str, Any]:
    """The numbers of the report (JSON-serialisable). See the module docstring for the frames."""
    classes = [str(c) for c in classes]
    for col in ("id", "label", "current_label"):
        if col not in labels.columns:
            raise ValueError(f"bias_stats: labels frame lacks column {col!r}")
    lab = labels
    if split and "split" in lab.columns:
        lab = lab[lab["split"] == split]
    lab = lab[["id", "label", "current_label"]].astype({"id": str})
    n = len(lab)
    oc, osh = _shares(lab["label"], classes)
    cc, csh = _shares(lab["current_label"], classes)
    drift = {c: csh[c] - osh[c] for c in classes}
    out: dict[str, Any] = {
        "split": split,
        "rows": n,
        "classes": classes,
        "distribution": {
            c: {
                "original_count": oc[c],
                "current_count": cc[c],
                "original_share": round(osh[c], 6),
                "current_share": round(csh[c], 6),
                "drift": round(drift[c], 6),
            }
            for c in classes
        },
    }
    max_class = max(classes, key=lambda c: abs(drift[c])) if classes else None
    out["max_abs_drift"] = round(abs(drift[max_class]), 6) if max_class else 0.0
    out["max_drift_class"] = max_class

    # cumulative: how often each original class has been overturned so far
    changed = lab["label"] != lab["current_label"]
    flow = pd.crosstab(lab["label"], lab["current_label"]).reindex(index=classes, columns=classes, fill_value=0)
    out["overturned"] = {
        c: {
            "rows": oc[c],
            "overturned": int(changed[lab["label"] == c].sum()),
            "rate": round(float(changed[lab["label"] == c].mean()) if oc[c] else 0.0, 6),
        }
        for c in classes
    }
    out["original_to_current"] = {a: {b: int(flow.loc[a, b]) for b in classes} for a in classes}

    # this iteration's corrections
    it: dict[str, Any] = {"changes": 0, "by_source": {}, "rate_per_class": {}, "flow": {}}
    if changes is not None and len(changes):
        ch = changes.astype({"id": str})
        ch = ch[ch["id"].isin(set(lab["id"]))]
        before = lab.set_index("id")["current_label"].copy()
        prev = ch.drop_duplicates("id", keep="first").set_index("id")["old_label"]
        before.loc[prev.index] = prev.values  # labels as they were before the iteration
        bc, _ = _shares(before, classes)
        by_old = ch["old_label"].value_counts()
        it["changes"] = int(len(ch))
        it["by_source"] = (
            {str(k): int(v) for k, v in ch["source"].value_counts().items()} if "source" in ch.columns else {}
        )
        it["rate_per_class"] = {c: round(float(by_old.get(c, 0)) / bc[c], 6) if bc[c] else 0.0 for c in classes}
        it["changed_from"] = {c: int(by_old.get(c, 0)) for c in classes}
        f = pd.crosstab(ch["old_label"], ch["new_label"])
        it["flow"] = {
            a: {b: int(f.loc[a, b]) if a in f.index and b in f.columns else 0 for b in classes} for a in classes
        }
    out["iteration_corrections"] = it

    # member agreement per (current) class
    out["agreement"] = {}
    out["members"] = []
    if predictions is not None and len(predictions):
        pr = predictions
        if split and "split" in pr.columns:
            pr = pr[pr["split"] == split]
        pr = pr.astype({"id": str}).merge(lab[["id", "current_label"]], on="id", how="inner")
        members = member_names(pr, classes)
        out["members"] = members
        for c in classes:
            rows = pr[pr["current_label"] == c]
            entry: dict[str, Any] = {"rows": int(len(rows))}
            if len(rows):
                if "agreement" in rows:
                    entry["mean_agreement"] = round(float(rows["agreement"].mean()), 6)
                if "confidence" in rows:
                    entry["mean_confidence"] = round(float(rows["confidence"].mean()), 6)
                if "ens_label" in rows:
                    entry["ensemble_agrees_with_label"] = round(float((rows["ens_label"] == c).mean()), 6)
                for m in members:
                    probs = rows[[f"p_{m}_{k}" for k in classes]].to_numpy()
                    pred = np.asarray(classes)[probs.argmax(axis=1)]
                    entry[f"{m}_agrees_with_label"] = round(float((pred == c).mean()), 6)
            out["agreement"][c] = entry

    # mitigation
    over = [c for c in classes if drift[c] > max_drift]
    under = [c for c in classes if drift[c] < -max_drift]
    caps = {c: int(max(0, np.floor((osh[c] + max_drift) * n - cc[c]))) for c in classes}
    out["mitigation"] = {
        "max_drift": max_drift,
        "engage": bool(over or under),
        "over": over,
        "under": under,
        # rows that may still move INTO each class before its share exceeds original + max_drift
        "class_caps": caps,
    }
    return out
