"""Stages train@<member> (iteration 0, the original labels) and retrain@it<k>-<member> (the
member's own retraining strategy from the previous iteration's model)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from sentiloop import store
from sentiloop.convergence import LoopState
from sentiloop.folds import fold_of
from sentiloop.jsonio import read_json
from sentiloop.layout import Layout
from sentiloop.models import build_model, load_model
from sentiloop.settings import Settings


def run(s: Settings, L: Layout, member: str) -> dict:
    """train@<member>: fit on the split corpus's labels."""
    return fit(s, member, L.store(0), L.models(0, member))


def retrain(s: Settings, L: Layout, k: int, member: str) -> dict:
    """retrain@it<k>-<member>: refit on iteration k's labels, from the model of k - 1; once the
    loop has converged, the previous model passes through unchanged."""
    prev_dir, out_dir = L.models(k - 1, member), L.models(k, member)
    state = LoopState.from_dict(read_json(L.state(k)))
    if state.converged and state.converged_at is not None and state.converged_at < state.k:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(prev_dir, out_dir)
        return {"member": member, "passed_through": True}
    # the last iteration's models are judged by nobody: no fold models for them
    return fit(s, member, L.store(k), out_dir, prev_dir=prev_dir, folds=k < s.loop.max_iterations)


def _read_split(db: Path, split: str, chunk: int) -> pd.DataFrame:
    """The rows of a split the models learn from: rows set aside by the correction rule are not."""
    parts = list(store.iter_chunks(db, ["id", "text", "current_label"], where="split = ? AND aside = 0",
                                   params=(split,), chunk_size=chunk))
    return pd.concat(parts or [pd.DataFrame(columns=["id", "text", "current_label"])], ignore_index=True)


def fit(s: Settings, member: str, store_db: Path, out_dir: Path, *, prev_dir: Path | None = None,
        folds: bool = True) -> dict:
    """Fit one member on the store's current labels (from `prev_dir`'s model when given), plus
    its cross-fitting fold models when it is one of the cross-fitted members (loop.cross_fit_members)."""
    out_dir = Path(out_dir)
    chunk = s.loop.chunk_size
    index = {c: i for i, c in enumerate(s.classes)}
    train = _read_split(store_db, "train", chunk)
    dev = _read_split(store_db, "dev", chunk)
    y = train["current_label"].map(index).to_numpy()
    eval_set = (dev["text"].tolist(), dev["current_label"].map(index).to_numpy()) if len(dev) else None
    cfg = s.member_config(member)

    def fit_one(texts, labels, prev):
        init = load_model(prev) if prev is not None and Path(prev).exists() else None
        model = build_model(member, s.classes, cfg, language=s.data.language, seed=s.seed)
        return model.fit(texts, labels, init_from=init, eval_set=eval_set)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    model = fit_one(train["text"].tolist(), y, prev_dir)
    model.save(out_dir)
    k = s.loop.cross_fit
    if k >= 2 and member in s.loop.cross_fit_members and folds:
        folds = fold_of(train["id"], k, s.seed)
        for f in range(k):
            mask = folds != f
            prev_f = Layout.fold(prev_dir, f) if prev_dir is not None else None
            fit_one(train["text"][mask].tolist(), y[mask], prev_f).save(Layout.fold(out_dir, f))
    return {"member": member, "strategy": model.strategy_, "n_train": int(len(y))}


