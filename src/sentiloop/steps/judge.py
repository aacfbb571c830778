"""Stage judge@it<k>: estimate the label noise from the out-of-fold predictions of iteration k
and judge every free train row against its original label (sentiloop.noise_model,
sentiloop.judgement). Writes data/it<k>/judgement.parquet (what correct@it<k> applies and
relabel@it<k> queues) and metrics/noise/it<k>.json."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sentiloop import judgement, noise_model, store
from sentiloop.jsonio import read_json, write_json
from sentiloop.layout import Layout
from sentiloop.predictions import prob_columns, read_predictions
from sentiloop.schedules import scheduled_value
from sentiloop.settings import Settings

JUDGEMENT_COLUMNS = ["id", "original", "current", "label", "aside", "p_wrong", "strength", "action", "best"]


def evidence(s: Settings, preds: pd.DataFrame, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The judging probabilities of train rows and each voting member's argmax.

    Only the cross-fitted members are evidence (their train-row predictions are out-of-fold);
    they are mixed with the ensemble's weights renormalised over them. Without cross-fitting the
    ensemble's own (in-sample) probabilities are all there is."""
    classes = s.classes
    members = s.fold_members
    if not members:
        probs = preds[prob_columns("ens", classes)].to_numpy(dtype=np.float64)
        return probs, np.zeros((len(preds), 0), dtype=np.int64), []
    w = np.array([max(float(weights.get(m, 0.0)), 0.0) for m in members])
    if w.sum() <= 0:
        w = np.ones(len(members))
    voters = [m for m, wm in zip(members, w) if wm > 0]
    w = w / w.sum()
    per = {m: preds[prob_columns(m, classes)].to_numpy(dtype=np.float64) for m in members}
    probs = sum(wm * per[m] for m, wm in zip(members, w))
    votes = np.stack([per[m].argmax(axis=1) for m in voters], axis=1) if voters else np.zeros((len(preds), 0), np.int64)
    return probs, votes, voters


def rule_for(s: Settings, k: int, noise_rate: float, n_free: int) -> judgement.Rule:
    """This iteration's rule: the schedule's value is the posterior bar, or (curriculum) the
    share of the estimated wrong labels that may flip."""
    c = s.correction
    value = scheduled_value(s.schedule, k, s.loop.max_iterations)
    drift = s.schedule.max_drift if s.schedule.max_drift is not None else 1.0
    if s.schedule.name == "curriculum":
        budget = int(math.ceil(value * noise_rate * n_free))
        return judgement.Rule(
            flip_at=c.flip_floor, hold_at=c.hold_at, aside_at=c.aside_at, agree=c.agree, max_drift=drift, budget=budget
        )
    return judgement.Rule(flip_at=value, hold_at=c.hold_at, aside_at=c.aside_at, agree=c.agree, max_drift=drift)


def run(s: Settings, L: Layout, k: int) -> dict:
    classes, chunk = s.classes, s.loop.chunk_size
    index = {c: i for i, c in enumerate(classes)}
    rows = store.read_column_values(
        L.store(k - 1), ["id", "label", "current_label", "locked"], where="split = 'train'", chunk_size=chunk
    )
    cols = prob_columns("ens", classes) + [c for m in s.fold_members for c in prob_columns(m, classes)]
    preds = read_predictions(L.predictions(k), ["id"] + list(dict.fromkeys(cols)), split="train")
    frame = rows.merge(preds, on="id", how="left", validate="one_to_one")
    if frame[cols].isna().any().any():
        raise store.StoreError(
            f"{L.predictions(k)}: train rows of {L.store(k - 1)} without predictions; rerun predict on this store"
        )
    weights = read_json(L.eval(k - 1))["ensemble"].get("weights", {})
    probs, votes, voters = evidence(s, frame, weights)
    original = frame["label"].map(index).to_numpy()
    current = frame["current_label"].map(index).to_numpy()
    if np.isnan(original.astype(float)).any() or np.isnan(current.astype(float)).any():
        raise store.StoreError(f"{L.store(k - 1)}: train labels outside data.classes = {classes}")
    original, current = original.astype(np.int64), current.astype(np.int64)

    est = noise_model.estimate(probs, original, anchor_share=s.correction.anchor_share, em_steps=s.correction.em_steps)
    post = est.posterior(probs, original)
    free = frame["locked"].to_numpy() == 0
    n_free = int(free.sum())
    post_f, orig_f, cur_f = post[free], original[free], current[free]
    rule = rule_for(s, k, est.noise_rate, n_free)
    v = judgement.judge(post_f, orig_f, cur_f, votes[free], est.prior, rule)

    names = np.asarray(classes, dtype=object)
    out = pd.DataFrame(
        {
            "id": frame["id"][free].astype(str).to_numpy(),
            "original": names[orig_f],
            "current": names[cur_f],
            "label": names[v.label],
            "aside": v.aside.astype(np.int8),
            "p_wrong": v.p_wrong.astype(np.float32),
            "strength": v.strength.astype(np.float32),
            "action": v.action.astype(str),
            "best": names[post_f.argmax(axis=1)],
        }
    )
    for j, c in enumerate(classes):
        out[f"post_{c}"] = post_f[:, j].astype(np.float32)
    path = L.judgement(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)

    # what applying these verdicts is expected to fix, net, and the expected wrong labels left in
    # the rows trained on, both per judged row
    rows_f = np.arange(n_free)
    changed = v.label != cur_f
    gain = float((post_f[rows_f, v.label] - post_f[rows_f, cur_f])[changed].sum() / max(n_free, 1))
    residual = float((1.0 - v.strength[~v.aside]).sum() / max(n_free, 1))
    actions = pd.Series(v.action).value_counts()
    report = {
        "iteration": k,
        **est.to_dict(classes),
        "evidence_members": s.fold_members or ["ensemble (in-sample)"],
        "voters": voters,
        "flip_at": rule.flip_at,
        "budget": rule.budget,
        "max_drift": rule.max_drift,
        "judged": n_free,
        "flips": int((v.label != orig_f).sum()),
        "new_flips": int(actions.get(judgement.FLIP, 0)),
        "held": int(actions.get(judgement.HOLD, 0)),
        "reverted": int(actions.get(judgement.REVERT, 0)),
        "aside": int(v.aside.sum()),
        "dropped_by_budget": v.dropped_by_budget,
        "dropped_by_drift": v.dropped_by_drift,
        "residual_noise": round(residual, 6),
        "expected_gain": round(gain, 6),
    }
    write_json(L.noise(k), report)
    return report
