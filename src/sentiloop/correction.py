"""The label-correction policy of one iteration.

Order of authority: a human label (locked) is never changed by anything automatic; an LLM answer
that clears `llm.min_confidence` comes next; then the ensemble's label where its confidence clears
this iteration's (per-class) threshold. The ensemble may change at most `change_cap` of the train
rows per iteration (most confident first), which limits how fast a wrong model can rewrite its
own training data. The test split is never touched (`assert_test_unchanged`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentiloop import schedules


class CorrectionError(RuntimeError):
    pass


@dataclass
class Decision:
    changes: pd.DataFrame          # id, old_label, new_label, source, confidence, detail
    thresholds: dict[str, float]   # per class, as applied
    eligible: int                  # unlocked train rows considered
    capped: int                    # ensemble proposals dropped by change_cap


def select_relabel_queue(rows: pd.DataFrame, thresholds_guess: float, relabel_below: float,
                         max_rows: int) -> pd.DataFrame:
    """Rows an annotator should look at: low ensemble confidence, members that disagree, or an
    ensemble that contradicts the current label without being sure enough to change it.

    `rows`: unlocked train rows with id, text, current_label, ens_label, confidence, agreement.
    """
    low = rows["confidence"] < relabel_below
    members_conflict = rows["agreement"] < 1.0
    contradicts = (rows["ens_label"] != rows["current_label"]) & (rows["confidence"] < thresholds_guess)
    conflict = members_conflict | contradicts
    picked = rows[low | conflict].copy()
    picked["reason"] = np.where(conflict[low | conflict], "conflict", "low_confidence")
    picked["priority"] = (1.0 - picked["confidence"]) + 0.5 * (picked["ens_label"] != picked["current_label"])
    picked = picked.sort_values(["priority", "id"], ascending=[False, True], kind="stable")
    return picked.head(int(max_rows)).reset_index(drop=True)


def decide(rows: pd.DataFrame, classes: list[str], schedule: dict, k: int, n: int, *,
           change_cap: float, llm_answers: pd.DataFrame | None = None,
           llm_min_confidence: float = 1.01, n_train: int | None = None) -> Decision:
    """Decide this iteration's changes.

    `rows`: every train row with id, current_label, locked, ens_label, confidence (labels as names).
    `llm_answers`: id, llm_label, llm_confidence, rationale, model, status (optional).
    """
    index = {c: i for i, c in enumerate(classes)}
    unknown = set(rows["ens_label"]) - set(classes)
    if unknown:
        raise CorrectionError(f"ensemble labels {sorted(unknown)} are not in classes {classes}")
    free = rows[rows["locked"] == 0]
    n_train = int(n_train if n_train is not None else len(rows))
    changes: list[pd.DataFrame] = []
    taken: set = set()

    if llm_answers is not None and len(llm_answers):
        ok = llm_answers[llm_answers["status"].isin(["answered", "cached"])
                         & llm_answers["llm_label"].isin(classes)
                         & (llm_answers["llm_confidence"] >= llm_min_confidence)]
        # relabel.parquet also carries the queue's columns (current_label, confidence, ...):
        # take only the answer's own, or the merge suffixes current_label away
        cols = [c for c in ("id", "llm_label", "llm_confidence", "rationale", "model") if c in ok.columns]
        merged = free.merge(ok[cols], on="id", how="inner")
        # a confident answer that confirms the current label also settles the row for this
        # iteration: the ensemble was unsure about it, the annotator was not
        taken = set(merged["id"])
        merged = merged[merged["llm_label"] != merged["current_label"]]
        if len(merged):
            changes.append(pd.DataFrame({
                "id": merged["id"], "old_label": merged["current_label"], "new_label": merged["llm_label"],
                "source": "llm", "confidence": merged["llm_confidence"].astype(float),
                "detail": merged.get("model", "").astype(str) + ": " + merged.get("rationale", "").astype(str)}))

    conf = free["confidence"].to_numpy(dtype=float)
    proposed = free["ens_label"].map(index).to_numpy(dtype=np.int64)
    current = free["current_label"].map(index).to_numpy(dtype=np.int64)
    thresholds = schedules.class_thresholds(schedule, k, n, conf, proposed, current, len(classes))
    adopt = (proposed != current) & (conf >= thresholds[proposed]) & ~free["id"].isin(taken).to_numpy()
    cand = free[adopt].assign(_c=conf[adopt]).sort_values(["_c", "id"], ascending=[False, True], kind="stable")
    cap = int(np.floor(change_cap * n_train)) if change_cap is not None else len(cand)
    capped = max(0, len(cand) - cap)
    cand = cand.head(cap)
    if len(cand):
        changes.append(pd.DataFrame({
            "id": cand["id"], "old_label": cand["current_label"], "new_label": cand["ens_label"],
            "source": "ensemble", "confidence": cand["_c"].astype(float),
            "detail": [f"threshold {thresholds[index[c]]:.4g}" for c in cand["ens_label"]]}))
    frame = (pd.concat(changes, ignore_index=True) if changes else
             pd.DataFrame(columns=["id", "old_label", "new_label", "source", "confidence", "detail"]))
    return Decision(frame, {c: float(thresholds[i]) for i, c in enumerate(classes)}, len(free), capped)


def assert_test_unchanged(store_path, chunk_size: int = 5000) -> None:
    """The held-out test split must keep its original labels in every iteration."""
    from sentiloop import store
    for chunk in store.iter_chunks(store_path, ["id", "label", "current_label"], where="split = 'test'",
                                   chunk_size=chunk_size):
        bad = chunk[chunk["label"] != chunk["current_label"]]
        if len(bad):
            raise CorrectionError(f"{store_path}: {len(bad)} test rows changed label (e.g. id {bad['id'].iloc[0]}); "
                                  "the held-out test split must never be corrected")
