"""The contenders, each a function of (benchmark frame, composed config, spec) -> result dict.

- none:              fit the members on the noisy labels.
- cleanlab_oof:      out-of-fold ensemble probabilities (K-fold, same members, fresh fits, as
                     sklearn's cross_val_predict does) and cleanlab's `find_label_issues` on them;
                     shared by the two cleanlab rows and saved to the work directory.
- cleanlab_relabel:  flagged rows relabelled to the out-of-fold argmax, members refitted once.
- cleanlab_prune:    flagged rows dropped, members refitted once.
- sentiloop:<name>:  the loop through sentiloop.pipeline with schedule <name> (loop_arm.py).
- ceiling:           fit the members on the gold labels.
- oracle:            the best any per-row relabelling from these members' evidence can do: out-of-fold
                     probabilities of members fitted on the *gold* labels, calibrated on gold,
                     combined with the *true* noise matrix; each label set to its Bayes posterior's
                     argmax (the label-accuracy-optimal decision), members refitted once. A rule
                     that only sees noisy labels cannot expect to beat it: it is the ceiling for
                     the correction issue's label-accuracy and precision bars with these members.

Every result carries the label metrics (metrics.label_repair) and the test metrics of the
final members' ensemble on the (clean) test rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sentiloop.benchmark.members import ensemble_proba, fit_members
from sentiloop.benchmark.metrics import label_repair, score_test_set
from sentiloop.settings import Settings

OOF_FILE = "cleanlab_oof.npz"


class ArmContext:
    """What an arm gets: the frame, the composed config, the benchmark spec, a work directory."""

    def __init__(self, frame: pd.DataFrame, cfg: Settings, spec: dict, workdir: Path):
        self.frame = frame
        self.cfg = cfg
        self.spec = spec
        self.workdir = Path(workdir)
        train = (frame["split"] == "train").to_numpy()
        self.train = frame[train].reset_index(drop=True)
        self.test = frame[~train].reset_index(drop=True)
        self.n_classes = len(cfg.classes)
        self.seed = int(spec.get("model_seed", cfg.seed))

    def evaluate(self, models) -> dict:
        proba = ensemble_proba(self.cfg, models, self.test["text"].tolist())
        return score_test_set(self.test["gold"].to_numpy(), proba.argmax(axis=1), self.n_classes)


def _fit_and_score(ctx: ArmContext, texts, labels, repair: dict) -> dict:
    models = fit_members(ctx.cfg, texts, labels, seed=ctx.seed)
    return {**repair, **ctx.evaluate(models)}


def arm_none(ctx: ArmContext) -> dict:
    tr = ctx.train
    repair = label_repair(tr["gold"], tr["noisy"], tr["noisy"])
    return _fit_and_score(ctx, tr["text"].tolist(), tr["noisy"].to_numpy(), repair)


def arm_ceiling(ctx: ArmContext) -> dict:
    tr = ctx.train
    repair = label_repair(tr["gold"], tr["noisy"], tr["gold"])
    return _fit_and_score(ctx, tr["text"].tolist(), tr["gold"].to_numpy(), repair)


def out_of_fold_proba(ctx: ArmContext, n_folds: int) -> np.ndarray:
    """(n_train, k) probabilities, each row predicted by members that never saw it."""
    from sklearn.model_selection import StratifiedKFold

    tr = ctx.train
    texts = tr["text"].to_numpy(dtype=object)
    noisy = tr["noisy"].to_numpy()
    oof = np.zeros((len(tr), ctx.n_classes))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=ctx.seed)
    for fit_idx, held_idx in folds.split(texts, noisy):
        models = fit_members(ctx.cfg, texts[fit_idx].tolist(), noisy[fit_idx], seed=ctx.seed)
        oof[held_idx] = ensemble_proba(ctx.cfg, models, texts[held_idx].tolist())
    return oof


def arm_oracle(ctx: ArmContext) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    tr = ctx.train
    k = ctx.n_classes
    texts = tr["text"].to_numpy(dtype=object)
    gold, noisy = tr["gold"].to_numpy(np.int64), tr["noisy"].to_numpy(np.int64)
    oof = np.zeros((len(tr), k))
    folds = StratifiedKFold(n_splits=int(ctx.spec.get("cleanlab_folds", 5)), shuffle=True, random_state=ctx.seed)
    for fit_idx, held_idx in folds.split(texts, gold):
        models = fit_members(ctx.cfg, texts[fit_idx].tolist(), gold[fit_idx], seed=ctx.seed)
        oof[held_idx] = ensemble_proba(ctx.cfg, models, texts[held_idx].tolist())
    logp = np.log(np.clip(oof, 1e-6, 1.0))
    clean = LogisticRegression(C=100.0, max_iter=2000).fit(logp, gold).predict_proba(logp)
    true_matrix = np.stack([np.bincount(noisy[gold == j], minlength=k) / max((gold == j).sum(), 1) for j in range(k)])
    joint = clean * true_matrix[:, noisy].T
    final = joint.argmax(axis=1)
    repair = label_repair(tr["gold"], tr["noisy"], final)
    return _fit_and_score(ctx, tr["text"].tolist(), final, repair)


def arm_cleanlab_oof(ctx: ArmContext) -> dict:
    from cleanlab.filter import find_label_issues

    n_folds = int(ctx.spec.get("cleanlab_folds", 5))
    oof = out_of_fold_proba(ctx, n_folds)
    noisy = ctx.train["noisy"].to_numpy()
    issues = find_label_issues(
        noisy, oof, filter_by=ctx.spec.get("cleanlab_filter_by", "prune_by_noise_rate"), n_jobs=1
    )
    np.savez(ctx.workdir / OOF_FILE, oof=oof, issues=issues)
    flipped = ctx.train["flipped"].to_numpy()
    return {
        "n_flagged": int(issues.sum()),
        "flag_precision": float((issues & flipped).sum() / max(issues.sum(), 1)),
        "flag_recall": float((issues & flipped).sum() / max(flipped.sum(), 1)),
        "folds": n_folds,
    }


def _load_oof(ctx: ArmContext) -> tuple[np.ndarray, np.ndarray]:
    path = ctx.workdir / OOF_FILE
    if not path.exists():
        raise RuntimeError(f"{path} missing: run the cleanlab_oof arm first")
    data = np.load(path)
    return data["oof"], data["issues"].astype(bool)


def arm_cleanlab_relabel(ctx: ArmContext) -> dict:
    oof, issues = _load_oof(ctx)
    tr = ctx.train
    final = tr["noisy"].to_numpy().copy()
    final[issues] = oof.argmax(axis=1)[issues]
    repair = label_repair(tr["gold"], tr["noisy"], final)
    return _fit_and_score(ctx, tr["text"].tolist(), final, repair)


def arm_cleanlab_prune(ctx: ArmContext) -> dict:
    _, issues = _load_oof(ctx)
    tr = ctx.train
    kept = ~issues
    repair = label_repair(tr["gold"], tr["noisy"], tr["noisy"], kept=kept)
    return _fit_and_score(ctx, tr.loc[kept, "text"].tolist(), tr.loc[kept, "noisy"].to_numpy(), repair)


ARMS: dict[str, Callable[[ArmContext], dict[str, Any]]] = {
    "none": arm_none,
    "cleanlab_oof": arm_cleanlab_oof,
    "cleanlab_relabel": arm_cleanlab_relabel,
    "cleanlab_prune": arm_cleanlab_prune,
    "ceiling": arm_ceiling,
    "oracle": arm_oracle,
}


def get_arm(name: str) -> Callable[[ArmContext], dict[str, Any]]:
    if name.startswith("sentiloop:"):
        from sentiloop.benchmark.loop_arm import arm_sentiloop

        schedule = name.split(":", 1)[1].partition("@")[0]
        return lambda ctx: arm_sentiloop(ctx, schedule, tag=name.split(":", 1)[1])
    try:
        return ARMS[name]
    except KeyError:
        raise ValueError(f"unknown arm {name!r}; known: {sorted(ARMS)} and sentiloop:<schedule>") from None
