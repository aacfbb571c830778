"""sentiloop's arm: the loop run by `sentiloop.pipeline.run_loop`, the driver that calls the
functions the DVC stages call, in dvc.yaml's order: ingest -> split -> train (it0) -> for
K = 1..N: predict (models of K-1 judge every row) -> relabel -> correct -> analyze -> retrain ->
then predict_final, publish and summarize. The
benchmark frame is handed to ingest as a Parquet file with `data.source: file` and a gold
column, exactly as a user's planted-noise corpus would be.

One thing differs from `dvc repro`: which rows are train and which are test. Every arm must be
scored on the same train rows and the same test rows, so the split step's seeded random
assignment is replaced by the benchmark's (`fixed_splits`); the split step itself (copying the
store, setting current_label, the loop state) is the pipeline's. Without --dev the dev split is
empty (every arm trains on the same rows), which disables the plateau criterion; the lexicon
then calibrates on its (noisy) training labels.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from typing import Mapping

import numpy as np
import pandas as pd

from sentiloop import pipeline, store
from sentiloop.benchmark.metrics import label_repair
from sentiloop.layout import Layout
from sentiloop.settings import Settings


@contextmanager
def fixed_splits(assignment: Mapping[str, str]):
    """Make sentiloop.split assign the benchmark's splits instead of drawing its own."""
    import sentiloop.split as split_module

    original = split_module.FIXED_ASSIGNMENT
    split_module.FIXED_ASSIGNMENT = {str(k): v for k, v in assignment.items()}
    try:
        yield
    finally:
        split_module.FIXED_ASSIGNMENT = original


def loop_settings(cfg: Settings, source: str) -> Settings:
    """The benchmark's settings with the frame (a Parquet file with a gold column) as the corpus."""
    classes = cfg.classes
    return cfg.merged(
        {
            "data": {
                "source": "file",
                "path": str(source),
                "format": "parquet",
                "encoding_errors": "strict",
                "language": cfg.data.language,
                "classes": classes,
                "id_column": "id",
                "text_column": "text",
                "label_column": "label",
                "gold_column": "gold_label",
                "label_map": {c: c for c in classes},
                "max_text_chars": 10**9,
                "filtered_labels": [],
                "max_rows": None,
            }
        }
    )


def _train_labels(db, chunk: int) -> pd.Series:
    frame = store.read_column_values(db, ["id", "current_label"], where="split = 'train'", chunk_size=chunk)
    return frame.set_index("id")["current_label"]


def arm_sentiloop(ctx, schedule: str, tag: str | None = None) -> dict:
    cfg = ctx.cfg
    if cfg.schedule.name != schedule:
        raise RuntimeError(f"config composed for schedule {cfg.schedule.name!r}, not {schedule!r}")
    classes = cfg.classes
    work = ctx.workdir / "loop" / (tag or schedule).replace("@", "_")
    if work.exists():
        shutil.rmtree(work)
    L = Layout(work)
    L.data.mkdir(parents=True)

    frame = ctx.frame
    split = frame["split"].astype(str)
    source = pd.DataFrame(
        {
            "id": frame["id"].astype(str),
            "text": frame["text"],
            "label": np.asarray(classes, dtype=object)[frame["noisy"].to_numpy()],
            "gold_label": np.asarray(classes, dtype=object)[frame["gold"].to_numpy()],
        }
    )
    source.to_parquet(L.data / "source.parquet", index=False)
    s = loop_settings(cfg, str((L.data / "source.parquet").resolve()))
    n, chunk = s.loop.max_iterations, s.loop.chunk_size

    train = frame[split == "train"]
    gold = pd.Series(train["gold"].to_numpy(), index=train["id"].astype(str).to_numpy())
    noisy = pd.Series(train["noisy"].to_numpy(), index=gold.index)
    index = {c: i for i, c in enumerate(classes)}

    def label_state(db) -> dict:
        cur = _train_labels(db, chunk).map(index).reindex(gold.index)
        if cur.isna().any():
            raise RuntimeError(f"{db}: train rows missing from the store")
        return label_repair(gold.to_numpy(), noisy.to_numpy(), cur.to_numpy(dtype=np.int64))

    trace: list[dict] = []

    def on_stage(stage: pipeline.Stage, result) -> None:
        name = stage.name.split("@")[0]
        if name == "split":
            trace.append({"iteration": 0, "threshold": None, "n_changed": 0, **label_state(L.store(0))})
        elif name in ("predict", "predict_final"):
            trace[-1].update(_test_of(result))
        elif name == "correct":
            trace.append(
                {
                    "iteration": stage.k,
                    "threshold": result.get("flip_at"),
                    "n_changed": int(result.get("changes", 0)),
                    "aside": result.get("aside"),
                    "estimated_noise_rate": result.get("estimated_noise_rate"),
                    "passed_through": bool(result.get("passed_through")),
                    **label_state(L.store(stage.k)),
                }
            )

    with fixed_splits(dict(zip(source["id"], split))):
        summary = pipeline.run_loop(s, L, until="publish", on_stage=on_stage)
    final = label_state(L.final_store)
    # what the final models trained on: the rows not set aside (cleanlab prune's "rows kept")
    kept = store.read_column_values(
        L.final_store, ["id", "current_label", "aside"], where="split = 'train' AND aside = 0", chunk_size=chunk
    )
    kept_gold = gold.reindex(kept["id"].astype(str)).to_numpy()
    final["training_label_accuracy"] = (
        float(np.mean(kept["current_label"].map(index).to_numpy() == kept_gold)) if len(kept) else None
    )
    final["aside"] = int(len(gold) - len(kept))
    return {
        **final,
        **_test_of_summary(summary),
        "trace": trace,
        "termination_reason": summary.get("termination_reason"),
        "iterations_run": summary.get("iterations_run"),
        "max_iterations": n,
    }


def _test_of(ev: dict) -> dict:
    test = ev["ensemble"]["test"]
    return {"test_accuracy": float(test["accuracy"]), "test_macro_f1": float(test["macro_f1"])}


def _test_of_summary(summary: dict) -> dict:
    return {"test_accuracy": float(summary["test_accuracy"]), "test_macro_f1": float(summary["test_macro_f1"])}
