"""The loop's steps as plain functions over explicit paths.

Stage scripts are thin wrappers around these (parse params, call one step), and benchmarks chain
the same functions in a temporary directory, so what is measured is what `dvc repro` runs.
"""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from sentiloop import convergence, correction, ensemble, evaluation, schedules, store
from sentiloop.models import build_model, load_model

FOLDS_DIR = "folds"


# --- helpers ---------------------------------------------------------------------------------
def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `make params` (or `dvc exp run`) to compose it from conf/")
    return yaml.safe_load(path.read_text())


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        f = float(o)
        return None if np.isnan(f) else f
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def fold_of(ids: Iterable[str], k: int, seed: int) -> np.ndarray:
    """Stable cross-fitting fold of each id (does not depend on row order or corpus size)."""
    salt = str(seed).encode()
    return np.array([zlib.crc32(salt + str(i).encode()) % k for i in ids], dtype=np.int64)


def prob_columns(name: str, classes: list[str]) -> list[str]:
    return [f"p_{name}_{c}" for c in classes]


def members_of(params: dict) -> list[str]:
    members = list(params["ensemble"]["members"])
    if not members:
        raise ValueError("ensemble.members is empty: enable at least one model")
    return members


def replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _read_split(db: Path, split: str, chunk: int, label_column: str = "current_label"):
    frame = pd.concat(list(store.iter_chunks(db, ["id", "text", label_column], where="split = ?",
                                             params=(split,), chunk_size=chunk)) or
                      [pd.DataFrame(columns=["id", "text", label_column])], ignore_index=True)
    return frame


def _state(path: Path) -> convergence.LoopState:
    return convergence.LoopState.from_dict(read_json(path))


# --- ingest and split ---------------------------------------------------------------------
def ingest_step(params: dict, out_db: Path, rejects: Path, gold_db: Path, metrics: Path) -> dict:
    from sentiloop.ingest import ingest
    report = ingest(params["data"], out_db, rejects, gold_db, chunk_size=int(params["loop"]["chunk_size"]),
                    seed=int(params["seed"]))
    m = report.as_metrics()
    write_json(metrics, m)
    return m


def split_step(params: dict, in_db: Path, out_db: Path, state_out: Path, metrics: Path) -> dict:
    from sentiloop.split import split_store
    sp = params["split"]
    counts = split_store(in_db, out_db, test_size=float(sp["test_size"]), dev_size=float(sp["dev_size"]),
                         seed=int(sp["seed"]), chunk_size=int(params["loop"]["chunk_size"]))
    write_json(state_out, convergence.LoopState(k=0).to_dict())
    m = {"rows_per_split": counts,
         "labels_per_split": {s: store.label_counts(out_db, "label", s) for s in counts}}
    write_json(metrics, m)
    return m


# --- training ---------------------------------------------------------------------------------
def train_step(params: dict, member: str, store_db: Path, out_dir: Path, *, prev_dir: Path | None = None,
               state_path: Path | None = None) -> dict:
    """Fit (iteration 0) or retrain (prev_dir given) one member on the store's current labels."""
    out_dir = Path(out_dir)
    if state_path is not None and prev_dir is not None:
        state = _state(state_path)
        if state.converged and state.converged_at is not None and state.converged_at < state.k:
            replace_dir(prev_dir, out_dir)       # converged earlier: pass the model through
            return {"member": member, "passed_through": True}
    data, chunk = params["data"], int(params["loop"]["chunk_size"])
    classes = list(data["classes"])
    index = {c: i for i, c in enumerate(classes)}
    train = _read_split(store_db, "train", chunk)
    dev = _read_split(store_db, "dev", chunk)
    y = train["current_label"].map(index).to_numpy()
    eval_set = (dev["text"].tolist(), dev["current_label"].map(index).to_numpy()) if len(dev) else None
    cfg = dict(params.get("models", {}).get(member, {}))
    seed = int(params["seed"])

    def fit_one(texts, labels, prev):
        init = load_model(prev) if prev is not None and Path(prev).exists() else None
        model = build_model(member, classes, cfg, language=data["language"], seed=seed)
        return model.fit(texts, labels, init_from=init, eval_set=eval_set)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    model = fit_one(train["text"].tolist(), y, prev_dir)
    model.save(out_dir)
    k = int(params["loop"].get("cross_fit") or 0)
    if k >= 2:
        folds = fold_of(train["id"], k, seed)
        for f in range(k):
            mask = folds != f
            prev_f = Path(prev_dir) / FOLDS_DIR / f"f{f}" if prev_dir is not None else None
            fit_one(train["text"][mask].tolist(), y[mask], prev_f).save(out_dir / FOLDS_DIR / f"f{f}")
    return {"member": member, "strategy": model.strategy_, "n_train": int(len(y))}


# --- prediction -------------------------------------------------------------------------------
def predict_step(params: dict, store_db: Path, models_dir: Path, out_parquet: Path, eval_json: Path,
                 iteration: str) -> dict:
    """Every member's probabilities and the ensemble's, for every row, in chunks; plus the
    dev/test evaluation of the models that made them (the models of `iteration`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, loop = params["data"], params["loop"]
    classes, chunk = list(data["classes"]), int(loop["chunk_size"])
    members = members_of(params)
    models = {m: load_model(Path(models_dir) / m) for m in members}
    k = int(loop.get("cross_fit") or 0)
    fold_models = {}
    if k >= 2:
        for m in members:
            fold_models[m] = [load_model(Path(models_dir) / m / FOLDS_DIR / f"f{f}") for f in range(k)]
    weights = ensemble.normalised_weights(members, params["ensemble"].get("weights") or {})
    contributions, imbalance = {}, False
    dev = _read_split(store_db, "dev", chunk)
    y_dev = dev["current_label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    if len(dev):
        dev_probs = {m: models[m].predict_proba(dev["text"].tolist()) for m in members}
        if params["ensemble"].get("fit_weights") and len(members) > 1 and hasattr(ensemble, "fit_weights"):
            weights = ensemble.fit_weights(dev_probs, y_dev, int(params["seed"]))
        if len(members) > 1 and hasattr(ensemble, "contributions"):
            contributions = ensemble.contributions(dev_probs, y_dev, weights)
            imbalance = bool(ensemble.imbalance(contributions))

    out_parquet = Path(out_parquet)
    out_parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_parquet.with_suffix(".tmp")
    writer = None
    evals: dict[str, dict[str, list]] = {s: {"y": [], **{m: [] for m in members + ["ensemble"]}} for s in ("dev", "test")}
    for frame in store.iter_chunks(store_db, ["id", "text", "split", "current_label"], chunk_size=chunk):
        texts = frame["text"].tolist()
        probs = {m: models[m].predict_proba(texts) for m in members}
        if k >= 2:
            is_train = (frame["split"] == "train").to_numpy()
            folds = fold_of(frame["id"], k, int(params["seed"]))
            for m in members:
                for f in range(k):
                    sel = np.nonzero(is_train & (folds == f))[0]
                    if len(sel):
                        probs[m][sel] = fold_models[m][f].predict_proba([texts[i] for i in sel])
        ens = ensemble.combine(probs, weights)
        conf, agree, var = ensemble.confidence_and_agreement(probs, ens)
        cols = {"id": frame["id"].astype(str), "split": frame["split"].astype(str)}
        for m in members:
            for j, c in enumerate(prob_columns(m, classes)):
                cols[c] = probs[m][:, j].astype(np.float32)
        for j, c in enumerate(prob_columns("ens", classes)):
            cols[c] = ens[:, j].astype(np.float32)
        cols["ens_label"] = np.asarray(classes, dtype=object)[ens.argmax(axis=1)]
        cols["confidence"] = conf.astype(np.float32)
        cols["agreement"] = agree.astype(np.float32)
        cols["variance"] = var.astype(np.float32)
        table = pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        for s in ("dev", "test"):
            sel = (frame["split"] == s).to_numpy()
            if sel.any():
                evals[s]["y"].extend(frame["current_label"][sel])
                for m in members:
                    evals[s][m].extend(np.asarray(classes)[probs[m][sel].argmax(axis=1)])
                evals[s]["ensemble"].extend(cols["ens_label"][sel])
    if writer is None:
        raise ValueError(f"{store_db}: the store has no rows")
    writer.close()
    tmp.replace(out_parquet)

    report: dict[str, Any] = {"iteration": iteration, "members": {}, "ensemble": {}}
    for name in members + ["ensemble"]:
        entry = {s: evaluation.classification_metrics(evals[s]["y"], evals[s][name], classes) for s in ("dev", "test")}
        if name != "ensemble":
            meta = read_json(Path(models_dir) / name / "model.json")
            entry["strategy"] = meta.get("strategy_")
            entry["dict_change_rate"] = (meta.get("extra") or {}).get("dict_change_rate")
            entry["weight"] = weights[name]
            entry["contribution"] = contributions.get(name)
            report["members"][name] = entry
        else:
            report["ensemble"] = {**entry, "weights": weights, "imbalance": imbalance}
    write_json(eval_json, report)
    return report


def read_predictions(path: Path, columns: list[str], split: str | None = "train") -> pd.DataFrame:
    import pyarrow.parquet as pq
    frame = pq.read_table(path, columns=list(dict.fromkeys(columns + ["split"]))).to_pandas()
    if split is not None:
        frame = frame[frame["split"] == split]
    return frame[columns].reset_index(drop=True)


# --- relabel queue and correction -----------------------------------------------------------
def _train_rows(params: dict, store_db: Path, predictions: Path, with_text: bool = False) -> pd.DataFrame:
    chunk = int(params["loop"]["chunk_size"])
    cols = ["id", "current_label", "locked"] + (["text"] if with_text else [])
    parts = list(store.iter_chunks(store_db, cols, where="split = 'train'", chunk_size=chunk))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    pred = read_predictions(predictions, ["id", "ens_label", "confidence", "agreement"])
    merged = rows.merge(pred, on="id", how="left", validate="one_to_one")
    if merged["ens_label"].isna().any():
        missing = merged.loc[merged["ens_label"].isna(), "id"].iloc[0]
        raise correction.CorrectionError(f"{predictions}: no prediction for train id {missing}")
    return merged


def relabel_step(params: dict, k: int, n: int, store_db: Path, predictions: Path, out_parquet: Path,
                 usage_json: Path, *, cache_dir: Path, gold_db: Path | None = None) -> dict:
    """Queue the rows worth an annotator's look, and ask the configured one (or nobody)."""
    from sentiloop import relabel
    state_converged = False
    rows = _train_rows(params, store_db, predictions, with_text=True)
    rows = rows[rows["locked"] == 0]
    sched = params["schedule"]
    guess = (schedules.scheduled_value(sched, k, n) if sched["name"] != "curriculum"
             else float(params["correction"]["relabel_below"]))
    corr = params["correction"]
    queue = correction.select_relabel_queue(rows, guess, float(corr["relabel_below"]), int(corr["relabel_queue_max"]))
    queue = queue[["id", "text", "current_label", "ens_label", "confidence", "agreement", "reason", "priority"]]
    answers, usage = relabel.answer_queue(queue, params.get("llm") or {"provider": "none"}, list(params["data"]["classes"]),
                                          iteration=k, cache_dir=Path(cache_dir), gold_path=gold_db)
    out = queue.drop(columns=["text"]).merge(answers, on="id", how="left")
    Path(out_parquet).parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_parquet, index=False)
    usage = {**usage, "queued": int(len(queue)), "queued_low_confidence": int((queue["reason"] == "low_confidence").sum()),
             "queued_conflict": int((queue["reason"] == "conflict").sum())}
    write_json(usage_json, usage)
    return usage


def correct_step(params: dict, k: int, n: int, prev_store: Path, predictions: Path, relabel_parquet: Path,
                 eval_json: Path, prev_state: Path, out_store: Path, state_out: Path, metrics: Path) -> dict:
    """Apply this iteration's corrections into a new store, or pass through once converged."""
    classes = list(params["data"]["classes"])
    state = _state(prev_state)
    ev = read_json(eval_json)
    state.dev_f1.append(float(ev["ensemble"]["dev"]["macro_f1"]))
    last = state.history[-1] if state.history else {}
    lex = ev["members"].get("lexicon", {})
    done, reason = convergence.check(state, params["convergence"],
                                     last_label_change=last.get("label_change_rate"),
                                     last_dict_change=lex.get("dict_change_rate") if state.history else None)
    state.k = k
    if done and not state.converged:
        state.converged, state.termination_reason, state.converged_at = True, reason, k - 1
    n_train = store.count(prev_store, "split = 'train'")
    if state.converged:
        with store.atomic_db(out_store, copy_from=prev_store):
            pass
        record = {"k": k, "passed_through": True, "label_change_rate": 0.0, "changes": 0,
                  "corrections_by_source": {}, "thresholds": {}}
    else:
        rows = _train_rows(params, prev_store, predictions)
        answers = pd.read_parquet(relabel_parquet)
        answers = answers[answers["status"].notna()] if "status" in answers else answers.iloc[0:0]
        # bias mitigation: drift of the labels so far beyond analysis.max_drift engages
        # class-balanced thresholds and per-class caps (reported in metrics/analysis/itK.md)
        from sentiloop import analysis
        mitigation = analysis.store_mitigation(prev_store, classes, float((params.get("analysis") or {}).get(
            "max_drift", 1.0)), int(params["loop"]["chunk_size"]))
        decision = correction.decide(rows, classes, analysis.mitigated_schedule(params["schedule"], mitigation), k, n,
                                     change_cap=float(params["loop"]["change_cap"]), llm_answers=answers,
                                     llm_min_confidence=float((params.get("llm") or {}).get("min_confidence", 1.01)),
                                     n_train=n_train)
        ch, dropped = decision.changes, 0
        if mitigation["engage"]:
            ch, dropped = analysis.apply_class_caps(ch, mitigation["class_caps"])
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            applied = store.apply_label_changes(con, ch)
            if applied != len(ch):
                raise correction.CorrectionError(f"{len(ch)} changes decided but {applied} applied")
            store.write_history(con, ((r.id, k, r.old_label, r.new_label, r.source, float(r.confidence), r.detail)
                                      for r in ch.itertuples(index=False)))
        record = {"k": k, "passed_through": False, "changes": int(len(ch)),
                  "label_change_rate": float(len(ch) / max(n_train, 1)),
                  "corrections_by_source": {s: int(v) for s, v in ch["source"].value_counts().items()},
                  "thresholds": decision.thresholds, "capped": decision.capped, "eligible": decision.eligible,
                  "mitigation_engaged": int(bool(mitigation["engage"])), "dropped_by_class_caps": dropped,
                  "max_abs_drift_before": mitigation["max_abs_drift"]}
    correction.assert_test_unchanged(out_store, int(params["loop"]["chunk_size"]))
    record["class_distribution"] = store.label_counts(out_store, "current_label", "train")
    record["locked"] = store.count(out_store, "locked = 1")
    state.history.append(record)
    write_json(state_out, state.to_dict())
    write_json(metrics, record)
    return record


# --- publish and summary ----------------------------------------------------------------------
def publish_step(params: dict, last_store: Path, last_state: Path, final_eval: Path, out_store: Path,
                 summary_json: Path) -> dict:
    """The refined corpus (current_label + label_history) and the loop's final verdict."""
    n = int(params["loop"]["max_iterations"])
    state = _state(last_state)
    ev = read_json(final_eval)
    last = state.history[-1] if state.history else {}
    lex = ev["members"].get("lexicon", {})
    if not state.converged:
        state.dev_f1.append(float(ev["ensemble"]["dev"]["macro_f1"]))
    state = convergence.finish(state, params["convergence"], n, last_label_change=last.get("label_change_rate"),
                               last_dict_change=lex.get("dict_change_rate"))
    with store.atomic_db(out_store, copy_from=last_store) as con:
        con.execute("CREATE INDEX IF NOT EXISTS history_sentence ON label_history (sentence_id)")
    correction.assert_test_unchanged(out_store, int(params["loop"]["chunk_size"]))
    changed = store.count(out_store, "split = 'train' AND label != current_label")
    n_train = store.count(out_store, "split = 'train'")
    summary = {"converged_at": state.converged_at, "termination_reason": state.termination_reason,
               "iterations_run": sum(1 for h in state.history if not h.get("passed_through")),
               "final_label_change_rate": float(last.get("label_change_rate", 0.0)),
               "labels_changed_total": changed, "labels_changed_share": changed / max(n_train, 1),
               "test_macro_f1": ev["ensemble"]["test"]["macro_f1"], "test_accuracy": ev["ensemble"]["test"]["accuracy"],
               "dev_macro_f1": ev["ensemble"]["dev"]["macro_f1"],
               "members_test_macro_f1": {m: e["test"]["macro_f1"] for m, e in ev["members"].items()}}
    write_json(summary_json, summary)
    return summary


# --- the whole loop in one process (tests and benchmarks) -------------------------------------
def run_loop(params: dict, workdir: Path, *, stop_after_ingest: bool = False) -> dict:
    """Run the same steps `dvc repro` runs, in the same order and with the same paths under
    `workdir`, without DVC. Benchmarks use it so that what they measure is the pipeline's code."""
    import os
    w = Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    n = int(params["loop"]["max_iterations"])
    members = members_of(params)
    cwd = os.getcwd()
    os.chdir(w)
    try:
        ingest_step(params, Path("data/ingested.sqlite"), Path("data/rejects.csv"), Path("data/gold.sqlite"),
                    Path("metrics/ingest.json"))
        if stop_after_ingest:
            return {}
        split_step(params, Path("data/ingested.sqlite"), Path("data/it0/sentences.sqlite"),
                   Path("data/it0/loop_state.json"), Path("metrics/split.json"))
        for m in members:
            train_step(params, m, Path("data/it0/sentences.sqlite"), Path("models/it0") / m)
        for k in range(1, n + 1):
            it, prev = f"it{k}", f"it{k - 1}"
            predict_step(params, Path(f"data/{prev}/sentences.sqlite"), Path(f"models/{prev}"),
                         Path(f"data/{it}/predictions.parquet"), Path(f"metrics/eval/{prev}.json"), prev)
            relabel_step(params, k, n, Path(f"data/{prev}/sentences.sqlite"), Path(f"data/{it}/predictions.parquet"),
                         Path(f"data/{it}/relabel.parquet"), Path(f"metrics/llm/{it}.json"),
                         cache_dir=Path(".cache/llm"), gold_db=Path("data/gold.sqlite"))
            correct_step(params, k, n, Path(f"data/{prev}/sentences.sqlite"), Path(f"data/{it}/predictions.parquet"),
                         Path(f"data/{it}/relabel.parquet"), Path(f"metrics/eval/{prev}.json"),
                         Path(f"data/{prev}/loop_state.json"), Path(f"data/{it}/sentences.sqlite"),
                         Path(f"data/{it}/loop_state.json"), Path(f"metrics/iterations/{it}.json"))
            for m in members:
                train_step(params, m, Path(f"data/{it}/sentences.sqlite"), Path(f"models/{it}/{m}"),
                           prev_dir=Path(f"models/{prev}/{m}"), state_path=Path(f"data/{it}/loop_state.json"))
        last = f"it{n}"
        predict_step(params, Path(f"data/{last}/sentences.sqlite"), Path(f"models/{last}"),
                     Path("data/final/predictions.parquet"), Path(f"metrics/eval/{last}.json"), last)
        summary = publish_step(params, Path(f"data/{last}/sentences.sqlite"), Path(f"data/{last}/loop_state.json"),
                               Path(f"metrics/eval/{last}.json"), Path("data/final/sentences.sqlite"),
                               Path("metrics/summary.json"))
        from sentiloop.summary import collect
        summary["iterations"] = collect(params, Path("data/final/sentences.sqlite"), Path("data/gold.sqlite"),
                                        Path("metrics"))
        return summary
    finally:
        os.chdir(cwd)
