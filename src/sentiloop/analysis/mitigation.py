"""How the correct stage applies the mitigation flag: class-balanced thresholds, per-class caps."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sentiloop.settings.loop import Schedule

from .stats import bias_stats


def mitigated_schedule(schedule: Schedule, mitigation: Mapping[str, Any]) -> Schedule:
    """The schedule to correct with: class_balanced (per-class thresholds, bounded by the
    schedule's max_drift) once drift engaged mitigation. A curriculum schedule's start/end are
    shares, not thresholds: it is kept, and the per-class caps alone hold the drift."""
    if not mitigation.get("engage") or schedule.name in ("class_balanced", "curriculum"):
        return schedule
    return schedule.model_copy(update={"name": "class_balanced"})


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
    """bias_stats' mitigation block for a store's train rows (original vs current labels).

    It depends only on the counts of (label, current_label) pairs, so SQLite counts them (GROUP
    BY) and `mitigation_from_counts` applies bias_stats' formulas: memory does not grow with the
    corpus (reading every id and label cost ~100 MiB at 712k rows). `chunk_size` is kept for callers; the counts need no chunking."""
    from sentiloop import store

    con = store.connect(store_db, readonly=True)
    try:
        pairs = con.execute("SELECT label, current_label, COUNT(*) FROM sentences WHERE split = 'train' "
                            "GROUP BY label, current_label").fetchall()
    finally:
        con.close()
    return mitigation_from_counts(pairs, classes, max_drift)


def mitigation_from_counts(pairs, classes: Sequence[str], max_drift: float) -> dict[str, Any]:
    """The mitigation block from (label, current_label, rows) triples, with bias_stats' formulas."""
    classes = [str(c) for c in classes]
    n = sum(int(c) for _, _, c in pairs)
    oc = {c: 0 for c in classes}
    cc = {c: 0 for c in classes}
    for orig, cur, cnt in pairs:
        if str(orig) in oc:
            oc[str(orig)] += int(cnt)
        if str(cur) in cc:
            cc[str(cur)] += int(cnt)
    d = max(1, n)
    osh = {c: float(oc[c]) / d for c in classes}
    csh = {c: float(cc[c]) / d for c in classes}
    drift = {c: csh[c] - osh[c] for c in classes}
    max_class = max(classes, key=lambda c: abs(drift[c])) if classes else None
    over = [c for c in classes if drift[c] > max_drift]
    under = [c for c in classes if drift[c] < -max_drift]
    caps = {c: int(max(0, np.floor((osh[c] + max_drift) * n - cc[c]))) for c in classes}
    return {"max_drift": max_drift, "engage": bool(over or under), "over": over, "under": under,
            "class_caps": caps, "max_abs_drift": round(abs(drift[max_class]), 6) if max_class else 0.0,
            "max_drift_class": max_class}
