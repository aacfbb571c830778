"""Stages train@<member> (iteration 0, the original labels) and retrain@it<k>-<member> (the
member's own retraining strategy from the previous iteration's model, kept only where it beats
a model trained from scratch and the previous iteration's model on dev: retraining never hurts,
and each member's final model is its best dev iteration)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from sentiloop import store
from sentiloop.convergence import LoopState
from sentiloop.folds import fold_of
from sentiloop.jsonio import read_json, write_json
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
    info = fit(s, member, L.store(k), out_dir, prev_dir=prev_dir, folds=k < s.loop.max_iterations)
    if s.loop.guard:
        info["guard"] = guard(s, member, L.store(k), out_dir, prev_dir, noise_json=L.noise(k))
    return info


def corrected_accuracy(pred: np.ndarray, noisy: np.ndarray, matrix: np.ndarray) -> float:
    """Accuracy against the true labels, estimated from the noisy ones: the joint of (prediction,
    noisy label) is the joint of (prediction, true label) times T[true, noisy], so the latter is
    the former times T's inverse. Plain accuracy on noisy dev labels would prefer the model that
    learned the noise (under class-conditional noise, the uncorrected one)."""
    k = len(matrix)
    joint = np.zeros((k, k))
    np.add.at(joint, (pred, noisy), 1.0)
    joint /= max(len(pred), 1)
    try:
        true_joint = joint @ np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        true_joint = joint
    return float(np.trace(true_joint))


def guard(s: Settings, member: str, store_db: Path, out_dir: Path, prev_dir: Path, *, noise_json: Path) -> dict:
    """Keep the best on dev of: the strategy's model (already in out_dir), one trained from
    scratch on the same rows (for the members in loop.guard_scratch: a second full fit), and the
    previous iteration's model. Dev labels are the original
    (noisy) ones, so candidates are scored by `corrected_accuracy` under the noise matrix
    judge@it<k> estimated (identity when there is none). The fold models stay the strategy's."""
    chunk = s.loop.chunk_size
    dev = _read_split(store_db, "dev", chunk)
    if not len(dev):
        verdict = {"kept": "strategy", "reason": "no dev rows"}
        write_json(out_dir / "guard.json", verdict)
        return verdict
    index = {c: i for i, c in enumerate(s.classes)}
    noisy = dev["current_label"].map(index).to_numpy()
    matrix = np.eye(len(s.classes))
    if noise_json.exists():
        m = read_json(noise_json)["matrix"]
        matrix = np.array([[m[a][b] for b in s.classes] for a in s.classes])
    texts = dev["text"].tolist()
    candidates = {"strategy": load_model(out_dir), "previous": load_model(prev_dir)}
    cfg = s.member_config(member)
    if member in s.loop.guard_scratch and cfg.get("strategy") != "scratch":
        train = _read_split(store_db, "train", chunk)
        scratch = build_model(member, s.classes, cfg, language=s.data.language, seed=s.seed)
        candidates["scratch"] = scratch.fit(
            train["text"].tolist(), train["current_label"].map(index).to_numpy(), eval_set=(texts, noisy)
        )
    scores = {
        name: corrected_accuracy(m.predict_proba(texts).argmax(axis=1), noisy, matrix) for name, m in candidates.items()
    }
    best = max(scores, key=lambda n: (round(scores[n], 6), n == "strategy", n == "scratch"))
    if best != "strategy":
        folds = out_dir / "folds"
        keep = None
        if folds.exists():
            keep = out_dir.parent / f".{out_dir.name}.folds"
            shutil.move(str(folds), keep)
        shutil.rmtree(out_dir)
        if best == "previous":
            shutil.copytree(prev_dir, out_dir, ignore=shutil.ignore_patterns("folds"))
        else:
            candidates["scratch"].save(out_dir)
        if keep is not None:
            shutil.move(str(keep), out_dir / "folds")
    verdict = {"kept": best, "dev_accuracy_estimate": {n: round(v, 6) for n, v in scores.items()}}
    write_json(out_dir / "guard.json", verdict)
    return verdict


def _read_split(db: Path, split: str, chunk: int) -> pd.DataFrame:
    """The rows of a split the models learn from: rows set aside by the correction rule are not."""
    parts = list(
        store.iter_chunks(
            db, ["id", "text", "current_label"], where="split = ? AND aside = 0", params=(split,), chunk_size=chunk
        )
    )
    return pd.concat(parts or [pd.DataFrame(columns=["id", "text", "current_label"])], ignore_index=True)


def fit(
    s: Settings, member: str, store_db: Path, out_dir: Path, *, prev_dir: Path | None = None, folds: bool = True
) -> dict:
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
