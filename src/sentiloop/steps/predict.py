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
    return predict(s, L, s.loop.max_iterations, L.final_predictions)


def predict(s: Settings, L: Layout, models_of: int, out_parquet: Path) -> dict:
    store_db, models_dir, eval_json = L.store(models_of), L.models(models_of), L.eval(models_of)
    classes, chunk, members = s.classes, s.loop.chunk_size, s.members
    models = {m: load_model(models_dir / m) for m in members}
    k = s.loop.cross_fit
    fold_models = {}
    if k >= 2:
        for m in members:
            fold_models[m] = [load_model(Layout.fold(models_dir / m, f)) for f in range(k)]
    weights = ensemble.normalised_weights(members, s.ensemble.weights)
    contributions, imbalance = {}, False
    index = {c: i for i, c in enumerate(classes)}
    # the dev set is 10% of the corpus: predict it chunk by chunk (only the (n, k) probabilities
    # are kept), so neither its texts nor its tokenizations are ever in memory all at once
    dev_parts: dict[str, list[np.ndarray]] = {m: [] for m in members}
    y_parts: list[np.ndarray] = []
    for frame in store.iter_chunks(store_db, ["text", "current_label"], where="split = 'dev'", chunk_size=chunk):
        for m, p in ensemble.member_probas(models, frame["text"].tolist()).items():
            dev_parts[m].append(p)
        y_parts.append(frame["current_label"].map(index).to_numpy())
    if y_parts:
        y_dev = np.concatenate(y_parts)
        dev_probs = {m: np.concatenate(dev_parts[m]) for m in members}
        del dev_parts
        if s.ensemble.fit_weights and len(members) > 1:
            weights = ensemble.fit_weights(dev_probs, y_dev, s.seed)
        if len(members) > 1:
            contributions = ensemble.contributions(dev_probs, y_dev, weights)
            imbalance = bool(ensemble.imbalance(contributions))

    import pyarrow as pa
    import pyarrow.parquet as pq
    out_parquet = Path(out_parquet)
    out_parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_parquet.with_suffix(".tmp")
    writer = None
    # dev/test labels and predictions as int8 class codes (the metrics are computed at the end);
    # a list of label strings per member would cost ~60 bytes a row over 20% of the corpus
    evals: dict[str, dict[str, list]] = {sp: {"y": [], **{m: [] for m in members + ["ensemble"]}}
                                         for sp in ("dev", "test")}
    for frame in store.iter_chunks(store_db, ["id", "text", "split", "current_label"], chunk_size=chunk):
        texts = frame["text"].tolist()
        probs = ensemble.member_probas(models, texts)
        if k >= 2:
            is_train = (frame["split"] == "train").to_numpy()
            folds = fold_of(frame["id"], k, s.seed)
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
        for sp in ("dev", "test"):
            sel = (frame["split"] == sp).to_numpy()
            if sel.any():
                evals[sp]["y"].append(_label_codes(frame["current_label"][sel], index))
                for m in members:
                    evals[sp][m].append(probs[m][sel].argmax(axis=1).astype(np.int8))
                evals[sp]["ensemble"].append(ens[sel].argmax(axis=1).astype(np.int8))
    if writer is None:
        raise store.StoreError(f"{store_db}: the store has no rows")
    writer.close()
    tmp.replace(out_parquet)

    report: dict[str, Any] = {"iteration": it(models_of), "members": {}, "ensemble": {}}
    names = np.asarray(list(classes) + ["<not a class>"], dtype=object)     # code -1 (last)

    def as_labels(parts: list) -> np.ndarray:
        return names[np.concatenate(parts)] if parts else np.asarray([], dtype=object)

    for name in members + ["ensemble"]:
        entry = {sp: evaluation.classification_metrics(as_labels(evals[sp]["y"]), as_labels(evals[sp][name]), classes)
                 for sp in ("dev", "test")}
        if name != "ensemble":
            meta = read_json(models_dir / name / "model.json")
            entry["strategy"] = meta.get("strategy_")
            entry["dict_change_rate"] = (meta.get("extra") or {}).get("dict_change_rate")
            entry["weight"] = weights[name]
            entry["contribution"] = contributions.get(name)
            report["members"][name] = entry
        else:
            report["ensemble"] = {**entry, "weights": weights, "imbalance": imbalance}
    write_json(eval_json, report)
    return report


def _label_codes(labels: pd.Series, index: dict[str, int]) -> np.ndarray:
    """int8 class codes of label names; -1 for a name outside `index`."""
    return labels.map(index).fillna(-1).to_numpy().astype(np.int8)
