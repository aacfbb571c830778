"""sentiloop's arm: the loop run through `sentiloop.pipeline`, the functions the DVC stages call.

The stage order is dvc.yaml's: ingest -> split -> train (it0) -> for K = 1..N: predict (models of
K-1 judge every row) -> relabel -> correct -> retrain -> then predict_final and publish. The
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

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from sentiloop import pipeline, store
from sentiloop.benchmark.metrics import label_repair


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


def loop_params(cfg: dict, source: Path) -> dict:
    params = copy.deepcopy(cfg)
    classes = list(cfg["data"]["classes"])
    params["data"] = {
        "source": "file", "path": str(source), "format": "parquet", "encoding_errors": "strict",
        "language": cfg["data"]["language"], "classes": classes, "id_column": "id",
        "text_column": "text", "label_column": "label", "gold_column": "gold_label",
        "label_map": {c: c for c in classes}, "max_text_chars": 10**9, "max_rows": None,
    }
    return params


def _train_labels(db: Path, chunk: int) -> pd.Series:
    frame = store.read_column_values(db, ["id", "current_label"], where="split = 'train'", chunk_size=chunk)
    return frame.set_index("id")["current_label"]


def arm_sentiloop(ctx, schedule: str, tag: str | None = None) -> dict:
    cfg = ctx.cfg
    if cfg["schedule"]["name"] != schedule:
        raise RuntimeError(f"config composed for schedule {cfg['schedule']['name']!r}, not {schedule!r}")
    classes = list(cfg["data"]["classes"])
    work = ctx.workdir / "loop" / (tag or schedule).replace("@", "_")
    if work.exists():
        import shutil
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    d, m, mt = work / "data", work / "models", work / "metrics"

    frame = ctx.frame
    split = frame["split"].astype(str)
    source = pd.DataFrame({"id": frame["id"].astype(str), "text": frame["text"],
                           "label": np.asarray(classes, dtype=object)[frame["noisy"].to_numpy()],
                           "gold_label": np.asarray(classes, dtype=object)[frame["gold"].to_numpy()]})
    source.to_parquet(d / "source.parquet", index=False)
    params = loop_params(cfg, d / "source.parquet")
    n = int(params["loop"]["max_iterations"])
    chunk = int(params["loop"]["chunk_size"])
    members = pipeline.members_of(params)

    pipeline.ingest_step(params, d / "ingested.sqlite", d / "rejects.csv", d / "gold.sqlite", mt / "ingest.json")
    with fixed_splits(dict(zip(source["id"], split))):
        pipeline.split_step(params, d / "ingested.sqlite", d / "it0" / "sentences.sqlite",
                            d / "it0" / "loop_state.json", mt / "split.json")
    for member in members:
        pipeline.train_step(params, member, d / "it0" / "sentences.sqlite", m / "it0" / member)

    train = frame[split == "train"]
    gold = pd.Series(train["gold"].to_numpy(), index=train["id"].astype(str).to_numpy())
    noisy = pd.Series(train["noisy"].to_numpy(), index=gold.index)
    index = {c: i for i, c in enumerate(classes)}

    def label_state(db: Path) -> dict:
        cur = _train_labels(db, chunk).map(index).reindex(gold.index)
        if cur.isna().any():
            raise RuntimeError(f"{db}: train rows missing from the store")
        return label_repair(gold.to_numpy(), noisy.to_numpy(), cur.to_numpy(dtype=np.int64))

    trace = [{"iteration": 0, "threshold": None, "n_changed": 0,
              **label_state(d / "it0" / "sentences.sqlite")}]
    for k in range(1, n + 1):
        prev, it = f"it{k - 1}", f"it{k}"
        ev = pipeline.predict_step(params, d / prev / "sentences.sqlite", m / prev,
                                   d / it / "predictions.parquet", mt / "eval" / f"{prev}.json", prev)
        trace[-1].update(_test_of(ev))
        pipeline.relabel_step(params, k, n, d / prev / "sentences.sqlite", d / it / "predictions.parquet",
                              d / it / "relabel.parquet", mt / "llm" / f"{it}.json",
                              cache_dir=work / "llm_cache", gold_db=d / "gold.sqlite")
        rec = pipeline.correct_step(params, k, n, d / prev / "sentences.sqlite", d / it / "predictions.parquet",
                                    d / it / "relabel.parquet", mt / "eval" / f"{prev}.json",
                                    d / prev / "loop_state.json", d / it / "sentences.sqlite",
                                    d / it / "loop_state.json", mt / "iterations" / f"{it}.json")
        for member in members:
            pipeline.train_step(params, member, d / it / "sentences.sqlite", m / it / member,
                                prev_dir=m / prev / member, state_path=d / it / "loop_state.json")
        thresholds = rec.get("thresholds") or {}
        trace.append({"iteration": k, "threshold": min(thresholds.values()) if thresholds else None,
                      "thresholds": thresholds, "n_changed": int(rec.get("changes", 0)),
                      "passed_through": bool(rec.get("passed_through")), "capped": rec.get("capped"),
                      **label_state(d / it / "sentences.sqlite")})
    last = f"it{n}"
    ev = pipeline.predict_step(params, d / last / "sentences.sqlite", m / last, d / "final" / "predictions.parquet",
                               mt / "eval" / f"{last}.json", last)
    trace[-1].update(_test_of(ev))
    summary = pipeline.publish_step(params, d / last / "sentences.sqlite", d / last / "loop_state.json",
                                    mt / "eval" / f"{last}.json", d / "final" / "sentences.sqlite",
                                    mt / "summary.json")
    final = label_state(d / "final" / "sentences.sqlite")
    return {**final, **_test_of(ev), "trace": trace,
            "termination_reason": summary.get("termination_reason"),
            "iterations_run": summary.get("iterations_run"), "max_iterations": n}


def _test_of(ev: dict) -> dict:
    test = ev["ensemble"]["test"]
    return {"test_accuracy": float(test["accuracy"]), "test_macro_f1": float(test["macro_f1"])}
