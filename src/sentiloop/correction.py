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
from sentiloop.errors import SentiloopError
from sentiloop.settings.loop import Schedule


class CorrectionError(SentiloopError, RuntimeError):
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


def usable_answers(llm_answers: pd.DataFrame | None, classes: list[str], min_confidence: float) -> pd.DataFrame | None:
    """LLM answers that may be applied: valid status and label, confidence at or above the bar."""
    if llm_answers is None or not len(llm_answers):
        return None
    return llm_answers[llm_answers["status"].isin(["answered", "cached"])
                       & llm_answers["llm_label"].isin(classes)
                       & (llm_answers["llm_confidence"] >= min_confidence)]


def llm_changes(free: pd.DataFrame, ok: pd.DataFrame) -> tuple[pd.DataFrame | None, set]:
    """Changes from LLM answers on free rows (id, current_label), and the ids they settle.

    A confident answer that confirms the current label also settles the row for this iteration:
    the ensemble was unsure about it, the annotator was not. relabel.parquet also carries the
    queue's columns (current_label, confidence, ...): only the answer's own are merged, or the
    merge would suffix current_label away."""
    cols = [c for c in ("id", "llm_label", "llm_confidence", "rationale", "model") if c in ok.columns]
    merged = free[["id", "current_label"]].merge(ok[cols], on="id", how="inner")
    taken = set(merged["id"])
    merged = merged[merged["llm_label"] != merged["current_label"]]
    if not len(merged):
        return None, taken
    return pd.DataFrame({
        "id": merged["id"], "old_label": merged["current_label"], "new_label": merged["llm_label"],
        "source": "llm", "confidence": merged["llm_confidence"].astype(float),
        "detail": merged.get("model", "").astype(str) + ": " + merged.get("rationale", "").astype(str)}), taken


def decide(rows: pd.DataFrame, classes: list[str], schedule: Schedule, k: int, n: int, *,
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

    ok = usable_answers(llm_answers, classes, llm_min_confidence)
    if ok is not None:
        llm, taken = llm_changes(free, ok)
        if llm is not None:
            changes.append(llm)

    conf = free["confidence"].to_numpy(dtype=float)
    proposed = free["ens_label"].map(index).to_numpy(dtype=np.int64)
    current = free["current_label"].map(index).to_numpy(dtype=np.int64)
    thresholds = schedules.class_thresholds(schedule, k, n, conf, proposed, current, len(classes))
    adopt = (proposed != current) & (conf >= thresholds[proposed]) & ~free["id"].isin(taken).to_numpy()
    cand = free[adopt].assign(_c=conf[adopt]).sort_values(["_c", "id"], ascending=[False, True], kind="stable")
    cap = int(np.floor(change_cap * n_train)) if change_cap is not None else len(cand)
    capped = max(0, len(cand) - cap)
    return _decision(changes, cand.head(cap), thresholds, classes, len(free), capped)


def _decision(changes: list[pd.DataFrame], cand: pd.DataFrame, thresholds: np.ndarray, classes: list[str],
              eligible: int, capped: int) -> Decision:
    """The ensemble's admitted candidates (id, current_label, ens_label, _c) after the LLM's changes."""
    index = {c: i for i, c in enumerate(classes)}
    if len(cand):
        changes.append(pd.DataFrame({
            "id": cand["id"], "old_label": cand["current_label"], "new_label": cand["ens_label"],
            "source": "ensemble", "confidence": cand["_c"].astype(float),
            "detail": [f"threshold {thresholds[index[c]]:.4g}" for c in cand["ens_label"]]}))
    frame = (pd.concat(changes, ignore_index=True) if changes else
             pd.DataFrame(columns=["id", "old_label", "new_label", "source", "confidence", "detail"]))
    return Decision(frame, {c: float(thresholds[i]) for i, c in enumerate(classes)}, eligible, capped)


def assert_test_unchanged(store_path, chunk_size: int = 5000) -> None:
    """The held-out test split must keep its original labels in every iteration."""
    from sentiloop import store
    for chunk in store.iter_chunks(store_path, ["id", "label", "current_label"], where="split = 'test'",
                                   chunk_size=chunk_size):
        bad = chunk[chunk["label"] != chunk["current_label"]]
        if len(bad):
            raise CorrectionError(f"{store_path}: {len(bad)} test rows changed label (e.g. id {bad['id'].iloc[0]}); "
                                  "the held-out test split must never be corrected")


# --- the same decisions over a stream of chunks ---------------------------------------------------
# Why: at 712k rows a frame of every train row (ids and label names as Python strings) and its merge
# with the predictions cost hundreds of MiB. The functions below see the rows chunk by chunk and keep
# per row only what a global decision needs (float64 confidence, int8 class codes, ~10 bytes a row);
# ids are materialised only for the rows a decision may take. Their results equal
# `select_relabel_queue` and `decide` on the concatenated rows (tests/test_streaming_correction.py).

def merge_queues(best: pd.DataFrame | None, picked: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The top `max_rows` of two `select_relabel_queue` results, in its order (priority desc, id)."""
    if best is None or not len(best):
        return picked.head(int(max_rows)).reset_index(drop=True)
    if not len(picked):
        return best
    both = pd.concat([best, picked], ignore_index=True)
    both = both.sort_values(["priority", "id"], ascending=[False, True], kind="stable")
    return both.head(int(max_rows)).reset_index(drop=True)


def stream_relabel_queue(chunks, thresholds_guess: float, relabel_below: float, max_rows: int) -> pd.DataFrame:
    """`select_relabel_queue` over an iterable of row chunks (unlocked train rows), keeping only the
    bounded queue: the top N of a union is the top N of the chunks' top Ns."""
    best, empty = None, None
    for rows in chunks:
        picked = select_relabel_queue(rows, thresholds_guess, relabel_below, max_rows)
        if empty is None:
            empty = picked.iloc[0:0]
        if len(picked):
            best = merge_queues(best, picked, max_rows)
    if best is not None:
        return best
    return empty if empty is not None else pd.DataFrame(
        columns=["id", "current_label", "ens_label", "confidence", "agreement", "reason", "priority"])


def decide_streaming(chunks, classes: list[str], schedule: Schedule, k: int, n: int, *, change_cap: float,
                     llm_answers: pd.DataFrame | None = None, llm_min_confidence: float = 1.01,
                     n_train: int | None = None, extra_locked: set | None = None) -> Decision:
    """`decide` over the train rows given as chunks.

    `chunks`: a callable returning a fresh iterable of frames (id, current_label, locked, ens_label,
    confidence) in the same order each time; it is read twice: once for the per-row numbers, once
    for the ids of the rows the ensemble may change. `extra_locked`: ids to treat as locked (this
    iteration's human feedback)."""
    index = {c: i for i, c in enumerate(classes)}
    extra_locked = set(extra_locked or ())
    ok = usable_answers(llm_answers, classes, llm_min_confidence)
    ok_ids = set(ok["id"]) if ok is not None else set()

    conf_p, prop_p, cur_p, pos_p, taken_p, llm_rows, unknown = [], [], [], [], [], [], set()
    offset = 0
    for rows in chunks():
        unknown |= set(rows["ens_label"]) - set(classes)
        locked = rows["locked"].to_numpy() != 0
        if extra_locked:
            locked |= rows["id"].isin(extra_locked).to_numpy()
        free = ~locked
        sub = rows[free]
        conf_p.append(sub["confidence"].to_numpy(dtype=float))
        prop_p.append(sub["ens_label"].map(index).fillna(-1).to_numpy().astype(np.int8))
        cur_p.append(sub["current_label"].map(index).fillna(-1).to_numpy().astype(np.int8))
        pos_p.append(offset + np.nonzero(free)[0])
        if ok_ids:
            in_ok = sub["id"].isin(ok_ids).to_numpy()
            taken_p.append(in_ok)
            if in_ok.any():
                llm_rows.append(sub[in_ok][["id", "current_label"]])
        offset += len(rows)
    if unknown:
        raise CorrectionError(f"ensemble labels {sorted(unknown)} are not in classes {classes}")
    n_rows = offset
    if any((c < 0).any() for c in cur_p):
        raise CorrectionError(f"current labels outside classes {classes} in the train rows")
    conf = np.concatenate(conf_p) if conf_p else np.zeros(0)
    proposed = (np.concatenate(prop_p) if prop_p else np.zeros(0, np.int8)).astype(np.int64)
    current = (np.concatenate(cur_p) if cur_p else np.zeros(0, np.int8)).astype(np.int64)
    pos = np.concatenate(pos_p) if pos_p else np.zeros(0, np.int64)
    # a free row with a confident LLM answer is settled by it (see decide)
    taken_mask = np.concatenate(taken_p) if taken_p else np.zeros(len(conf), dtype=bool)
    del conf_p, prop_p, cur_p, pos_p, taken_p
    n_train = int(n_train if n_train is not None else n_rows)
    changes: list[pd.DataFrame] = []
    taken: set = set()

    if ok is not None and len(ok):
        free_llm = (pd.concat(llm_rows, ignore_index=True) if llm_rows
                    else pd.DataFrame({"id": pd.Series(dtype=object), "current_label": pd.Series(dtype=object)}))
        llm, taken = llm_changes(free_llm, ok)
        if llm is not None:
            changes.append(llm)

    thresholds = schedules.class_thresholds(schedule, k, n, conf, proposed, current, len(classes))
    adopt = (proposed != current) & (conf >= thresholds[proposed]) & ~taken_mask
    n_cand = int(adopt.sum())
    cap = int(np.floor(change_cap * n_train)) if change_cap is not None else None
    # ids are needed only for the adopted rows that can make the cut: all of them when the cap
    # does not bind, else those at or above the confidence of the cap-th most confident (ties at
    # that boundary are broken by id, as in decide)
    need = adopt.copy()
    if cap is not None and n_cand > cap:
        if cap > 0:
            boundary = np.sort(conf[adopt])[::-1][cap - 1]
            need &= conf >= boundary
        else:
            need[:] = False
    ids = _ids_at(chunks, pos[need], n_rows)
    names = np.asarray(classes, dtype=object)
    cand = pd.DataFrame({"id": ids, "_c": conf[need], "current_label": names[current[need]],
                         "ens_label": names[proposed[need]]})
    cand = cand.sort_values(["_c", "id"], ascending=[False, True], kind="stable")
    cap = cap if cap is not None else n_cand
    capped = max(0, n_cand - cap)
    return _decision(changes, cand.head(cap), thresholds, classes, len(conf), capped)


def _ids_at(chunks, positions: np.ndarray, n_rows: int) -> list:
    """The ids at the given row positions (sorted ascending), reading the chunks once more."""
    if not len(positions):
        return []
    want = np.zeros(n_rows, dtype=bool)
    want[positions] = True
    found: dict[int, object] = {}
    offset = 0
    for rows in chunks():
        sel = np.nonzero(want[offset:offset + len(rows)])[0]
        if len(sel):
            for i, v in zip(sel, rows["id"].to_numpy()[sel]):
                found[offset + int(i)] = v
        offset += len(rows)
    if offset != n_rows or len(found) != len(positions):
        raise CorrectionError(f"the rows changed between two reads ({n_rows} then {offset} rows)")
    return [found[int(p)] for p in positions]
