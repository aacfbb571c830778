"""Stages predict@it<k> (the models of k - 1 judge every row of store k - 1) and predict_final
(the last iteration's models judge the last store): every member's probabilities and the
ensemble's, for every row, in chunks; plus the dev/test evaluation of the models that made them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiloop import ensemble, evaluation, store
from sentiloop.folds import fold_of
from sentiloop.jsonio import read_json, write_json
from sentiloop.layout import Layout, it
from sentiloop.models import load_model
from sentiloop.predictions import prob_columns
from sentiloop.settings import Settings


def run(s: Settings, L: Layout, k: int) -> dict:
    """predict@it<k>: writes data/it<k>/predictions.parquet and metrics/eval/it<k-1>.json."""
    return predict(s, L, k - 1, L.predictions(k))


def final(s: Settings, L: Layout) -> dict:
    """predict_final: writes data/final/predictions.parquet and metrics/eval/it<N>.json."""
    return predict(s, L, s.loop.max_iterations, L.final_predictions, out_of_fold=False)


def predict(s: Settings, L: Layout, models_of: int, out_parquet: Path, *, out_of_fold: bool = True) -> dict:
    """Two passes over the store: the first predicts every row (train rows out-of-fold when
    cross-fitting) and keeps only the (n, k) probabilities (texts are read chunk by chunk), so
    the weights can be chosen on the evidence rows (weights.choose_weights) before anything is
    combined; the second reads ids and splits (no text) and writes the predictions file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sentiloop import weights as weighting
    from sentiloop.progress import bar

    store_db, models_dir, eval_json = L.store(models_of), L.models(models_of), L.eval(models_of)
    classes, chunk, members = s.classes, s.loop.chunk_size, s.members
    models = {m: load_model(models_dir / m) for m in members}
    k = s.loop.cross_fit
    # the final models have no fold models (nobody judges after them): train rows in-sample
    fold_members = [m for m in s.fold_members if out_of_fold]
    fold_models = {m: [load_model(Layout.fold(models_dir / m, f)) for f in range(k)] for m in fold_members}
    index = {c: i for i, c in enumerate(classes)}
    split_code = {"train": 0, "dev": 1, "test": 2}

    # pass 1: probabilities of every row, split and label codes
    parts: dict[str, list[np.ndarray]] = {m: [] for m in members}
    split_parts: list[np.ndarray] = []
    y_parts: list[np.ndarray] = []
    rows_bar = bar(desc=f"predict {it(models_of)} models", total=store.count(store_db), unit="row")
    for frame in store.iter_chunks(store_db, ["id", "text", "split", "current_label"], chunk_size=chunk):
        texts = frame["text"].tolist()
        probs = ensemble.member_probas(models, texts)
        if fold_members:
            is_train = (frame["split"] == "train").to_numpy()
            folds = fold_of(frame["id"], k, s.seed)
            for m in fold_members:
                for f in range(k):
                    sel = np.nonzero(is_train & (folds == f))[0]
                    if len(sel):
                        probs[m][sel] = fold_models[m][f].predict_proba([texts[i] for i in sel])
        for m in members:
            parts[m].append(np.asarray(probs[m], dtype=np.float64))
        split_parts.append(frame["split"].map(split_code).fillna(-1).to_numpy().astype(np.int8))
        y_parts.append(_label_codes(frame["current_label"], index))
        rows_bar.update(len(frame))
    rows_bar.close()
    if not y_parts:
        raise store.StoreError(f"{store_db}: the store has no rows")
    P = {m: np.concatenate(parts[m]) for m in members}
    del parts
    split = np.concatenate(split_parts)
    y_all = np.concatenate(y_parts)

    def rows_of(mask: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        mask = mask & (y_all >= 0)
        return {m: P[m][mask] for m in members}, y_all[mask].astype(np.int64)

    # the weights: chosen on the evidence rows, with the reasons recorded
    # out-of-fold evidence only when every member's train-row predictions are out-of-fold
    source = weighting.evidence_source(s.ensemble.weights_from, k if len(fold_members) == len(members) else 0)
    ev_probs, ev_y = rows_of(split == (split_code["train"] if source == "oof" else split_code["dev"]))
    decision = weighting.choose_weights(
        ev_probs,
        ev_y,
        {m: s.ensemble.weights[m] for m in members},
        fit=bool(s.ensemble.fit_weights),
        evidence=source,
        seed=s.seed,
    )
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
        raise store.StoreError(f"{store_db} changed while it was being predicted ({len(split)} rows, then {at})")
    writer.close()
    tmp.replace(out_parquet)

    report: dict[str, Any] = {"iteration": it(models_of), "members": {}, "ensemble": {}}
    names = np.asarray(list(classes) + ["<not a class>"], dtype=object)  # code -1 (last)
    for name in members + ["ensemble"]:
        pred = ens_codes if name == "ensemble" else P[name].argmax(axis=1)
        entry = {}
        for sp in ("dev", "test"):
            sel = split == split_code[sp]
            entry[sp] = evaluation.classification_metrics(names[y_all[sel]], names[pred[sel]], classes)
        if name != "ensemble":
            meta = read_json(models_dir / name / "model.json")
            entry["strategy"] = meta.get("strategy_")
            entry["dict_change_rate"] = (meta.get("extra") or {}).get("dict_change_rate")
            entry["weight"] = weights[name]
            entry["contribution"] = contributions.get(name)
            if name in decision.zeroed:
                entry["weight_reason"] = decision.zeroed[name]
            report["members"][name] = entry
        else:
            report["ensemble"] = {**entry, "weights": weights, "imbalance": imbalance, "weighting": decision.to_dict()}
    write_json(eval_json, report)
    return report


def _label_codes(labels: pd.Series, index: dict[str, int]) -> np.ndarray:
    """int8 class codes of label names; -1 for a name outside `index`."""
    return labels.map(index).fillna(-1).to_numpy().astype(np.int8)
