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
    dev/test evaluation of the models that made them (the models of `iteration`).

    Two passes over the store: the first predicts every row (train rows out-of-fold when
    cross-fitting) and keeps only the (n, k) probabilities (texts are read chunk by chunk), so the weights can be
    chosen on the evidence rows (weights.choose_weights) before anything is combined; the second
    reads ids and splits (no text) and writes the predictions file chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sentiloop import weights as weighting

    data, loop = params["data"], params["loop"]
    classes, chunk = list(data["classes"]), int(loop["chunk_size"])
    members = members_of(params)
    models = {m: load_model(Path(models_dir) / m) for m in members}
    k = int(loop.get("cross_fit") or 0)
    fold_models = {}
    if k >= 2:
        for m in members:
            fold_models[m] = [load_model(Path(models_dir) / m / FOLDS_DIR / f"f{f}") for f in range(k)]
    index = {c: i for i, c in enumerate(classes)}
    split_code = {"train": 0, "dev": 1, "test": 2}

    # pass 1: probabilities of every row, split and label codes
    parts: dict[str, list[np.ndarray]] = {m: [] for m in members}
    split_parts: list[np.ndarray] = []
    y_parts: list[np.ndarray] = []
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
        for m in members:
            parts[m].append(np.asarray(probs[m], dtype=np.float64))
        split_parts.append(frame["split"].map(split_code).fillna(-1).to_numpy().astype(np.int8))
        y_parts.append(_label_codes(frame["current_label"], index))
    if not y_parts:
        raise ValueError(f"{store_db}: the store has no rows")
    P = {m: np.concatenate(parts[m]) for m in members}
    del parts
    split = np.concatenate(split_parts)
    y_all = np.concatenate(y_parts)

    def rows_of(mask: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        mask = mask & (y_all >= 0)
        return {m: P[m][mask] for m in members}, y_all[mask].astype(np.int64)

    # the weights: chosen on the evidence rows, with the reasons recorded
    ens_cfg = params["ensemble"]
    source = weighting.evidence_source(ens_cfg.get("weights_from"), k)
    ev_probs, ev_y = rows_of(split == (split_code["train"] if source == "oof" else split_code["dev"]))
    decision = weighting.choose_weights(ev_probs, ev_y, ens_cfg.get("weights") or {},
                                        fit=bool(ens_cfg.get("fit_weights", True)), evidence=source,
                                        seed=int(params["seed"]))
    weights = decision.weights
    contributions, imbalance = {}, False
    dev_probs, y_dev = rows_of(split == split_code["dev"])
    if len(members) > 1 and len(y_dev):
        contributions = ensemble.contributions(dev_probs, y_dev, weights)
        imbalance = bool(ensemble.imbalance(contributions))

    # pass 2: ids and splits (no text), the ensemble, the predictions file
    out_parquet = Path(out_parquet)
    out_parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_parquet.with_suffix(".tmp")
    writer = None
    ens_codes = np.empty(len(split), dtype=np.int8)
    at = 0
    for frame in store.iter_chunks(store_db, ["id", "split"], chunk_size=chunk):
        rows = slice(at, at + len(frame))
        at += len(frame)
        probs = {m: P[m][rows] for m in members}
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
        ens_codes[rows] = ens.argmax(axis=1)
        table = pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    if at != len(split):
        raise ValueError(f"{store_db} changed while it was being predicted ({len(split)} rows, then {at})")
    writer.close()
    tmp.replace(out_parquet)

    report: dict[str, Any] = {"iteration": iteration, "members": {}, "ensemble": {}}
    names = np.asarray(list(classes) + ["<not a class>"], dtype=object)     # code -1 (last)
    for name in members + ["ensemble"]:
        pred = ens_codes if name == "ensemble" else P[name].argmax(axis=1)
        entry = {}
        for s in ("dev", "test"):
            sel = split == split_code[s]
            entry[s] = evaluation.classification_metrics(names[y_all[sel]], names[pred[sel]], classes)
        if name != "ensemble":
            meta = read_json(Path(models_dir) / name / "model.json")
            entry["strategy"] = meta.get("strategy_")
            entry["dict_change_rate"] = (meta.get("extra") or {}).get("dict_change_rate")
            entry["weight"] = weights[name]
            entry["contribution"] = contributions.get(name)
            if name in decision.zeroed:
                entry["weight_reason"] = decision.zeroed[name]
            report["members"][name] = entry
        else:
            report["ensemble"] = {**entry, "weights": weights, "imbalance": imbalance,
                                  "weighting": decision.to_dict()}
    write_json(eval_json, report)
    return report


def _label_codes(labels: pd.Series, index: dict[str, int]) -> np.ndarray:
    """int8 class codes of label names; -1 for a name outside `index`."""
    return labels.map(index).fillna(-1).to_numpy().astype(np.int8)


def read_predictions(path: Path, columns: list[str], split: str | None = "train") -> pd.DataFrame:
    import pyarrow.parquet as pq
    frame = pq.read_table(path, columns=list(dict.fromkeys(columns + ["split"]))).to_pandas()
    if split is not None:
        frame = frame[frame["split"] == split]
    return frame[columns].reset_index(drop=True)


# --- relabel queue and correction -----------------------------------------------------------
PRED_COLUMNS = ["id", "ens_label", "confidence", "agreement"]


def _train_chunks(params: dict, store_db: Path, predictions: Path, columns: list[str]):
    """The store's train rows (`columns`) with their predictions (ens_label, confidence,
    agreement), chunk by chunk, reading the store and the predictions file in lockstep.

    predict_step writes the predictions in the store's rowid order, so the k-th train row of the
    store is the k-th train row of the file; each chunk checks its ids, and a file that does not
    match the store row for row is an error (rerun predict on this store), never a silent merge."""
    import pyarrow.parquet as pq
    chunk = int(params["loop"]["chunk_size"])
    pf = pq.ParquetFile(predictions)
    batches = pf.iter_batches(batch_size=chunk, columns=PRED_COLUMNS + ["split"])
    buf: list[pd.DataFrame] = []
    have = 0

    def take(n: int) -> pd.DataFrame:
        nonlocal buf, have
        while have < n:
            b = next(batches, None)
            if b is None:
                break
            f = b.to_pandas()
            f = f[f["split"] == "train"]
            if len(f):
                buf.append(f[PRED_COLUMNS])
                have += len(f)
        if not buf:
            return pd.DataFrame(columns=PRED_COLUMNS)
        allf = pd.concat(buf, ignore_index=True) if len(buf) > 1 else buf[0].reset_index(drop=True)
        out, rest = allf.iloc[:n].reset_index(drop=True), allf.iloc[n:]
        buf, have = ([rest] if len(rest) else []), len(rest)
        return out

    cols = list(dict.fromkeys(["id"] + list(columns)))
    for rows in store.iter_chunks(store_db, cols, where="split = 'train'", chunk_size=chunk):
        pred = take(len(rows))
        if len(pred) < len(rows):
            missing = rows["id"].iloc[len(pred)]
            raise correction.CorrectionError(f"{predictions}: no prediction for train id {missing}")
        same = rows["id"].astype(str).to_numpy() == pred["id"].astype(str).to_numpy()
        if not same.all():
            i = int(np.argmin(same))
            raise correction.CorrectionError(
                f"{predictions} does not match {store_db} row for row: train row id {rows['id'].iloc[i]} "
                f"has the prediction of id {pred['id'].iloc[i]}; rerun predict on this store")
        yield pd.concat([rows.reset_index(drop=True), pred[PRED_COLUMNS[1:]]], axis=1)
    extra = take(1)
    if len(extra):
        raise correction.CorrectionError(f"{predictions}: train id {extra['id'].iloc[0]} is not a train row of {store_db}")


def _texts_of(store_db: Path, ids: list) -> dict:
    """id -> text for a few ids (the relabel queue)."""
    out = {}
    con = store.connect(store_db, readonly=True)
    try:
        for i in range(0, len(ids), 500):
            part = list(ids[i:i + 500])
            q = f"SELECT id, text FROM sentences WHERE id IN ({', '.join('?' * len(part))})"
            out.update(con.execute(q, part).fetchall())
    finally:
        con.close()
    return out


def relabel_step(params: dict, k: int, n: int, store_db: Path, predictions: Path, out_parquet: Path,
                 usage_json: Path, *, cache_dir: Path, gold_db: Path | None = None) -> dict:
    """Queue the rows worth an annotator's look, and ask the configured one (or nobody).

    Streams the store and the predictions; holds only the bounded queue, then reads its texts."""
    from sentiloop import relabel
    sched = params["schedule"]
    guess = (schedules.scheduled_value(sched, k, n) if sched["name"] != "curriculum"
             else float(params["correction"]["relabel_below"]))
    corr = params["correction"]
    unlocked = (rows[rows["locked"] == 0] for rows in
                _train_chunks(params, store_db, predictions, ["id", "current_label", "locked"]))
    queue = correction.stream_relabel_queue(unlocked, guess, float(corr["relabel_below"]),
                                            int(corr["relabel_queue_max"]))
    texts = _texts_of(store_db, queue["id"].tolist())
    queue = queue.assign(text=[texts[i] for i in queue["id"]])
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
                 eval_json: Path, prev_state: Path, out_store: Path, state_out: Path, metrics: Path,
                 feedback_dir: Path | None = None) -> dict:
    """Apply this iteration's corrections into a new store, or pass through once converged.

    Human feedback (reviewed files under `feedback_dir`) is applied first and locks its rows,
    in every iteration, converged or not, so no later automatic step can change them."""
    classes = list(params["data"]["classes"])
    accepted, human = None, None
    if feedback_dir is not None:
        from sentiloop import feedback
        accepted, rejects = feedback.load_feedback(
            feedback_dir, classes, prev_store,
            allowed_splits=tuple((params.get("feedback") or {}).get("splits") or ("train",)))
        human = feedback.feedback_stats(accepted, rejects)
        for r in rejects.head(20).itertuples(index=False):
            print(f"feedback rejected: {r.file}:{r.line} id={r.id} label={r.label}: {r.reason}")
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
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            human_changes = _apply_human(con, accepted, k)
        record = {"k": k, "passed_through": True, "label_change_rate": 0.0, "changes": 0,
                  "corrections_by_source": {"human": human_changes} if human_changes else {},
                  "thresholds": {}}
    else:
        human_locked = set(accepted["id"]) if accepted is not None and len(accepted) else set()
        answers = pd.read_parquet(relabel_parquet)
        answers = answers[answers["status"].notna()] if "status" in answers else answers.iloc[0:0]
        # bias mitigation: drift of the labels so far beyond analysis.max_drift engages
        # class-balanced thresholds and per-class caps (reported in metrics/analysis/itK.md)
        from sentiloop import analysis
        mitigation = analysis.store_mitigation(prev_store, classes, float((params.get("analysis") or {}).get(
            "max_drift", 1.0)), int(params["loop"]["chunk_size"]))
        decision = correction.decide_streaming(
            lambda: _train_chunks(params, prev_store, predictions, ["id", "current_label", "locked"]), classes, analysis.mitigated_schedule(params["schedule"], mitigation), k, n,
                                     change_cap=float(params["loop"]["change_cap"]), llm_answers=answers,
                                     llm_min_confidence=float((params.get("llm") or {}).get("min_confidence", 1.01)),
                                     n_train=n_train, extra_locked=human_locked)
        ch, dropped = decision.changes, 0
        if mitigation["engage"]:
            ch, dropped = analysis.apply_class_caps(ch, mitigation["class_caps"])
        with store.atomic_db(out_store, copy_from=prev_store) as con:
            human_changes = _apply_human(con, accepted, k)
            applied = store.apply_label_changes(con, ch)
            if applied != len(ch):
                raise correction.CorrectionError(f"{len(ch)} changes decided but {applied} applied")
            store.write_history(con, ((r.id, k, r.old_label, r.new_label, r.source, float(r.confidence), r.detail)
                                      for r in ch.itertuples(index=False)))
        record = {"k": k, "passed_through": False, "changes": int(len(ch)),
                  "label_change_rate": float(len(ch) / max(n_train, 1)),
                  "corrections_by_source": {**({"human": human_changes} if human_changes else {}),
                                            **{s: int(v) for s, v in ch["source"].value_counts().items()}},
                  "thresholds": decision.thresholds, "capped": decision.capped, "eligible": decision.eligible,
                  "mitigation_engaged": int(bool(mitigation["engage"])), "dropped_by_class_caps": dropped,
                  "max_abs_drift_before": mitigation["max_abs_drift"]}
    correction.assert_test_unchanged(out_store, int(params["loop"]["chunk_size"]))
    record["class_distribution"] = store.label_counts(out_store, "current_label", "train")
    record["locked"] = store.count(out_store, "locked = 1")
    if human is not None:
        record["feedback"] = human
    state.history.append(record)
    write_json(state_out, state.to_dict())
    write_json(metrics, record)
    return record


def _apply_human(con, accepted, k: int) -> int:
    if accepted is None or not len(accepted):
        return 0
    from sentiloop import feedback
    return feedback.apply_feedback(con, accepted, k)


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
                         Path(f"data/{it}/loop_state.json"), Path(f"metrics/iterations/{it}.json"),
                         feedback_dir=Path((params.get("feedback") or {}).get("dir") or "data/feedback"))
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
