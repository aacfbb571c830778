"""Per-iteration metrics of a finished loop, logged with dvclive (step = iteration).

Collected after the loop rather than inside each stage, so one dvclive directory holds the whole
convergence curve and no stage rewrites another stage's output. Gold labels (planted-noise
benchmarks) are read only here: label accuracy at iteration K is reconstructed from the final
store's label_history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiloop import evaluation, store
from sentiloop.layout import Layout
from sentiloop.settings import Settings

# what the dvclive log shows of evaluation.label_quality, per iteration (gold/<key>)
QUALITY_KEYS = (
    "label_accuracy",
    "original_label_accuracy",
    "corrections",
    "correction_precision",
    "correction_recall",
    "broken",
)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def labels_at_each_iteration(final_db: Path, chunk: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows (id, label) and a frame of label_history rows for reconstructing labels at K."""
    parts = list(store.iter_chunks(final_db, ["id", "label"], where="split = 'train'", chunk_size=chunk))
    train = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "label"])
    hist = list(
        store.iter_chunks(
            final_db,
            ["sentence_id", "iteration", "new_label"],
            table="label_history",
            chunk_size=chunk,
            order_by="rowid",
        )
    )
    history = (
        pd.concat(hist, ignore_index=True) if hist else pd.DataFrame(columns=["sentence_id", "iteration", "new_label"])
    )
    return train, history


def label_quality_per_iteration(final_db: Path, gold_db: Path, n: int, chunk: int) -> list[dict]:
    if not gold_db.exists() or store.count(gold_db, table="gold") == 0:
        return []
    train, history = labels_at_each_iteration(final_db, chunk)
    gold = pd.concat(
        list(store.iter_chunks(gold_db, ["id", "gold_label"], table="gold", chunk_size=chunk, order_by="rowid")),
        ignore_index=True,
    )
    frame = train.merge(gold, on="id", how="inner")
    out = []
    current = frame.set_index("id")["label"].copy()
    for k in range(0, n + 1):
        step = history[history["iteration"] == k]
        if len(step):
            last = step.drop_duplicates("sentence_id", keep="last").set_index("sentence_id")["new_label"]
            last = last[last.index.isin(current.index)]
            current.loc[last.index] = last.values
        q = evaluation.label_quality(frame["gold_label"], frame["label"], current.reindex(frame["id"]).to_numpy())
        out.append({key: q[key] for key in QUALITY_KEYS} if len(frame) else {})
    return out


def collect(s: Settings, L: Layout) -> list[dict[str, Any]]:
    """One record of metrics per iteration 0..N, from the run's metric files (and gold labels)."""
    n = s.loop.max_iterations
    with_llm = s.llm.provider != "none"
    sources = ("ensemble", "llm", "human") if with_llm else ("ensemble", "human")
    quality = label_quality_per_iteration(L.final_store, L.gold, n, s.loop.chunk_size)
    steps = []
    for k in range(0, n + 1):
        rec: dict[str, Any] = {}
        ev = _read(L.eval(k))
        for name, entry in list(ev.get("members", {}).items()) + [("ensemble", ev.get("ensemble", {}))]:
            for split in ("dev", "test"):
                for metric in ("accuracy", "macro_f1"):
                    v = (entry.get(split) or {}).get(metric)
                    if v is not None:
                        rec[f"{name}/{split}_{metric}"] = v
            if entry.get("weight") is not None:
                rec[f"{name}/weight"] = entry["weight"]
            if entry.get("contribution") is not None:
                rec[f"{name}/contribution"] = entry["contribution"]
            if entry.get("dict_change_rate") is not None:
                rec[f"{name}/dict_change_rate"] = entry["dict_change_rate"]
        it = _read(L.iteration_metrics(k))
        if it:
            rec["label_change_rate"] = it.get("label_change_rate", 0.0)
            for src in sources:
                rec[f"corrections/{src}"] = int((it.get("corrections_by_source") or {}).get(src, 0))
            dist = it.get("class_distribution") or {}
            total = sum(dist.values()) or 1
            for c in s.classes:
                rec[f"class_share/{c}"] = dist.get(c, 0) / total
            for key in ("flip_at", "estimated_noise_rate", "residual_noise", "aside"):
                if it.get(key) is not None:
                    rec[f"rule/{key}"] = it[key]
            rec["passed_through"] = int(bool(it.get("passed_through")))
        llm = _read(L.llm_usage(k)) if with_llm else {}  # llm=none: every counter is 0 by construction
        for key, v in llm.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rec[f"llm/{key}"] = v
        if k < len(quality):
            for key, v in quality[k].items():
                if v is not None and not (isinstance(v, float) and np.isnan(v)):
                    rec[f"gold/{key}"] = v
        steps.append(rec)
    return steps


# The curated plots of dvc.yaml's `plots:` section: one CSV per figure, one row per iteration, so
# `dvc plots show` draws three figures and `dvc plots diff` overlays experiments on them.
CONVERGENCE_SERIES = (
    "ensemble/dev_macro_f1",
    "ensemble/test_macro_f1",
    "label_change_rate",
    "lexicon/dict_change_rate",
    "gold/label_accuracy",
)


def _column(name: str) -> str:
    return name.replace("/", "_")


def write_plot_tables(
    steps: list[dict[str, Any]], members: list[str], convergence_csv: Path, members_csv: Path
) -> None:
    """convergence.csv: iteration + the convergence series this run has (gold only with gold
    labels, the dictionary change only with a lexicon); members.csv: iteration + each member's
    and the ensemble's test accuracy, one column per member name (and `ensemble`). Iteration 0
    has no label change: its cell is left empty."""
    import csv

    def write(path: Path, names: list[str], column) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["iteration", *[column(n) for n in names]])
            for k, rec in enumerate(steps):
                w.writerow([k, *[("" if rec.get(n) is None else round(float(rec[n]), 6)) for n in names]])

    present = [n for n in CONVERGENCE_SERIES if any(n in rec for rec in steps)]
    write(convergence_csv, present, _column)
    # columns named by member, so dvc.yaml's plot can list them as ${ensemble.members}
    write(members_csv, [f"{m}/test_accuracy" for m in [*members, "ensemble"]], lambda n: n.split("/")[0])


def log_with_dvclive(steps: list[dict[str, Any]], live_dir: Path) -> None:
    """One step per iteration. The loop's verdict (termination reason, converged_at) lives in
    metrics/summary.json, so `dvc exp show` lists it once."""
    from dvclive import Live

    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    for k, rec in enumerate(steps):
        live.step = k
        for name, value in rec.items():
            live.log_metric(name, value)
        if k < len(steps) - 1:
            live.next_step()
    live.end()
