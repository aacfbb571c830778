"""How the correct stage applies the mitigation flag: class-balanced thresholds, per-class caps."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .stats import bias_stats


def mitigated_schedule(schedule: Mapping[str, Any], mitigation: Mapping[str, Any]) -> dict:
    """The schedule to correct with: class_balanced (per-class thresholds) once drift engaged
    mitigation. A curriculum schedule's start/end are shares, not thresholds: it is kept, and
    the per-class caps alone hold the drift."""
    schedule = dict(schedule)
    if not mitigation.get("engage") or schedule.get("name") in ("class_balanced", "curriculum"):
        return schedule
    return {**schedule, "name": "class_balanced",
            "max_drift": float(schedule.get("max_drift", 0.02))}


def apply_class_caps(changes: pd.DataFrame, caps: Mapping[str, int],
                     capped_sources: Sequence[str] = ("ensemble",)) -> tuple[pd.DataFrame, int]:
    """Drop changes of `capped_sources` that would move more rows (net) into a class than its cap.

    Changes are taken in the order given (decide() lists LLM answers first, then the ensemble's
    most confident first). Other sources (llm, human) are never dropped, an independent annotator
    is the remedy for self-training drift, not its cause, but they count against the caps."""
    if changes is None or not len(changes):
        return changes, 0
    net = {c: 0 for c in caps}
    keep = []
    for old, new, src in zip(changes["old_label"], changes["new_label"], changes["source"]):
        if src in capped_sources and net.get(new, 0) + 1 > int(caps.get(new, 0)):
            keep.append(False)
            continue
        keep.append(True)
        net[new] = net.get(new, 0) + 1
        net[old] = net.get(old, 0) - 1
    mask = np.asarray(keep, dtype=bool)
    return changes[mask].reset_index(drop=True), int((~mask).sum())


def store_mitigation(store_db: str | Path, classes: Sequence[str], max_drift: float,
                     chunk_size: int = 5000) -> dict[str, Any]:
    """bias_stats' mitigation block for a store's train rows (original vs current labels)."""
    from sentiloop import store

    labels = store.read_column_values(store_db, ["id", "label", "current_label"],
                                      where="split = 'train'", chunk_size=chunk_size)
    s = bias_stats(labels, classes, max_drift=max_drift, split=None)
    return {**s["mitigation"], "max_abs_drift": s["max_abs_drift"],
            "max_drift_class": s["max_drift_class"]}
