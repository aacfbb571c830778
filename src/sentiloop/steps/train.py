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
from sentiloop.layout import FOLDS, Layout
from sentiloop.models import build_model, load_model
from sentiloop.settings import Settings

GUARD = "guard.json"  # models/it<k>/<member>/guard.json: which candidate retrain kept, and why


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
    return fit(
        s,
        member,
        L.store(k),
        out_dir,
        prev_dir=prev_dir,
        folds=k < s.loop.max_iterations,
        guard_noise=L.noise(k) if s.loop.guard else None,
    )


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


def guard(
    s: Settings,
    member: str,
    strategy_model,
    prev_dir: Path,
    train_texts: list[str],
    y: np.ndarray,
    eval_set: tuple[list[str], np.ndarray] | None,
    noise_json: Path,
) -> tuple[dict, object]:
    """Choose, on dev, among: the strategy's model, one trained from scratch on the same rows (for
    the members in loop.guard_scratch: a second full fit), and the previous iteration's model.
    Dev labels are the original (noisy) ones, so candidates are scored by `corrected_accuracy`
    under the noise matrix judge@it<k> estimated (identity when there is none).

    Returns the verdict and the model it keeps."""
    if eval_set is None:
        return {"kept": "strategy", "reason": "no dev rows"}, strategy_model
    texts, noisy = eval_set
    matrix = np.eye(len(s.classes))
    if noise_json.exists():
        m = read_json(noise_json)["matrix"]
        matrix = np.array([[m[a][b] for b in s.classes] for a in s.classes])
    candidates = {"strategy": strategy_model, "previous": load_model(prev_dir)}
    cfg = s.member_config(member)
    if member in s.loop.guard_scratch and cfg.get("strategy") != "scratch":
        scratch = build_model(member, s.classes, cfg, language=s.data.language, seed=s.seed)
        candidates["scratch"] = scratch.fit(train_texts, y, eval_set=eval_set)
    scores = {
        name: corrected_accuracy(m.predict_proba(texts).argmax(axis=1), noisy, matrix) for name, m in candidates.items()
    }
    best = max(scores, key=lambda n: (round(scores[n], 6), n == "strategy", n == "scratch"))
    verdict = {"kept": best, "dev_accuracy_estimate": {n: round(v, 6) for n, v in scores.items()}}
    return verdict, candidates[best]


def _read_split(db: Path, split: str, chunk: int) -> pd.DataFrame:
    """The rows of a split the models learn from: rows set aside by the correction rule are not."""
    parts = list(
        store.iter_chunks(
            db, ["id", "text", "current_label"], where="split = ? AND aside = 0", params=(split,), chunk_size=chunk
        )
    )
    return pd.concat(parts or [pd.DataFrame(columns=["id", "text", "current_label"])], ignore_index=True)


def fit(
    s: Settings,
    member: str,
    store_db: Path,
    out_dir: Path,
    *,
    prev_dir: Path | None = None,
    folds: bool = True,
    guard_noise: Path | None = None,
) -> dict:
    """Fit one member on the store's current labels (from `prev_dir`'s model when given), plus
    its cross-fitting fold models when it is one of the cross-fitted members (loop.cross_fit_members).
    With `guard_noise` (retrain, loop.guard), the model saved is `guard`'s choice and its verdict
    is written to guard.json; the fold models stay the strategy's."""
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
    texts = train["text"].tolist()
    model = fit_one(texts, y, prev_dir)
    verdict = None
    if guard_noise is not None:
        verdict, model = guard(s, member, model, prev_dir, texts, y, eval_set, guard_noise)
    if verdict is not None and verdict["kept"] == "previous":  # its files as they were saved
        shutil.copytree(prev_dir, out_dir, ignore=shutil.ignore_patterns(FOLDS, GUARD))
    else:
        model.save(out_dir)
    if verdict is not None:
        write_json(out_dir / GUARD, verdict)
    k = s.loop.cross_fit
    if k >= 2 and member in s.loop.cross_fit_members and folds:
        folds = fold_of(train["id"], k, s.seed)
        for f in range(k):
            mask = folds != f
            prev_f = Layout.fold(prev_dir, f) if prev_dir is not None else None
            fit_one(train["text"][mask].tolist(), y[mask], prev_f).save(Layout.fold(out_dir, f))
    info = {"member": member, "strategy": model.strategy_, "n_train": int(len(y))}
    return info if verdict is None else {**info, "guard": verdict}
