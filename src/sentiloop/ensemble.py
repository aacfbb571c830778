"""The ensemble: weighted soft vote over the members' class probabilities (pure numpy).

Every function takes `probs`: a dict {member name: (n, k) probability array}, rows summing to 1,
all members over the same rows and the same ordered classes.

- `member_probas` / `predict_proba`: the one way any caller (the predict stage, the gate, the
  bundle and the server, the benchmarks) turns fitted members and texts into probabilities.
- `combine`: weighted average of the members' probabilities; weights are renormalised over the
  members present, so disabling a member never needs a new weight table.
- `confidence_and_agreement`: the ensemble's max probability (the correction threshold compares
  against it), the fraction of members whose top class is the ensemble's, and the members'
  prediction variance (both feed the convergence check and the relabel queue).
- `fit_weights`: weights on the simplex minimising the ensemble's dev log-loss. The objective is
  convex in the weights, so exponentiated-gradient descent reaches the optimum; the seed only
  picks the starting point, which makes the recorded result reproducible to the last digit.
- `contributions` / `imbalance`: seed 001's leave-one-out check: each member's contribution is
  the ensemble's dev macro-F1 with it minus without it; the ensemble is flagged as imbalanced when
  the largest contribution exceeds `ratio` (3) times the smallest.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from sentiloop.errors import SentiloopError
from sentiloop.evaluation import macro_f1


class EnsembleError(SentiloopError, ValueError):
    """Inconsistent member probabilities or weights."""


def _check(probs: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Members in a stable order and their probabilities stacked as (m, n, k)."""
    if not probs:
        raise EnsembleError("no member probabilities given")
    names = list(probs)
    arrs = [np.asarray(probs[m], dtype=np.float64) for m in names]
    shape = arrs[0].shape
    for m, a in zip(names, arrs):
        if a.ndim != 2:
            raise EnsembleError(f"{m}: probabilities must be 2-D (n, k), got shape {a.shape}")
        if a.shape != shape:
            raise EnsembleError(f"{m}: shape {a.shape} differs from {names[0]}'s {shape}")
        if not np.all(np.isfinite(a)) or (a < 0).any():
            raise EnsembleError(f"{m}: probabilities must be finite and non-negative")
        if len(a) and not np.allclose(a.sum(axis=1), 1.0, atol=1e-4):
            raise EnsembleError(f"{m}: probability rows must sum to 1")
    return names, np.stack(arrs)


def normalised_weights(members, weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Weights for exactly `members`, summing to 1 (ensemble.weights in conf/ has one per member;
    equal weights when `weights` is None)."""
    members = list(members)
    if weights is None:
        weights = {m: 1.0 for m in members}
    missing = [m for m in members if m not in weights]
    if missing:
        raise EnsembleError(f"no ensemble weight for {missing}: add ensemble.weights.{missing[0]}")
    raw = {}
    for m in members:
        w = float(weights[m])
        if not np.isfinite(w) or w < 0:
            raise EnsembleError(f"weight for {m} must be finite and >= 0, got {w}")
        raw[m] = w
    total = sum(raw.values())
    if total <= 0:
        raise EnsembleError(f"weights of {members} sum to zero")
    return {m: w / total for m, w in raw.items()}


def member_probas(models: Mapping[str, Any], texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Each fitted member's (n, k) probabilities for `texts`, as the member returns them."""
    texts = list(texts)
    return {name: np.asarray(model.predict_proba(texts)) for name, model in models.items()}


def predict_proba(
    models: Mapping[str, Any],
    weights: Mapping[str, float] | None,
    texts: Sequence[str],
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """The ensemble's (n, k) probabilities for `texts`: the members' weighted soft vote, in
    chunks of `chunk_size` texts (all at once when None)."""
    texts = list(texts)
    if not models:
        raise EnsembleError("no members to predict with")
    n_classes = next(iter(models.values())).n_classes
    step = chunk_size or max(len(texts), 1)
    parts = [combine(member_probas(models, texts[i : i + step]), weights) for i in range(0, len(texts), step)]
    return np.concatenate(parts) if parts else np.zeros((0, n_classes))


def combine(probs: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weighted soft vote: (n, k) ensemble probabilities, rows summing to 1."""
    names, P = _check(probs)
    w = normalised_weights(names, weights)
    ens = np.tensordot(np.array([w[m] for m in names]), P, axes=1)
    s = ens.sum(axis=1, keepdims=True)
    return ens / np.where(s > 0, s, 1.0)


def confidence_and_agreement(probs: Mapping[str, np.ndarray], ens: np.ndarray):
    """Per row: (confidence, agreement, variance).

    confidence: the ensemble's top probability. agreement: fraction of members whose top class
    is the ensemble's top class. variance: the members' probability variance, averaged over the
    classes (0 when all members give the same distribution).
    """
    names, P = _check(probs)
    ens = np.asarray(ens, dtype=np.float64)
    if ens.shape != P.shape[1:]:
        raise EnsembleError(f"ensemble shape {ens.shape} != member shape {P.shape[1:]}")
    top = ens.argmax(axis=1)
    conf = ens.max(axis=1)
    agree = (P.argmax(axis=2) == top[None, :]).mean(axis=0)
    variance = P.var(axis=0).mean(axis=1)
    return conf, agree, variance


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    y = np.asarray(y)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def _check_labels(y, n: int, k: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise EnsembleError(f"labels shape {y.shape} != ({n},)")
    if y.dtype.kind not in "iu" or (n and (y.min() < 0 or y.max() >= k)):
        raise EnsembleError(f"labels must be integer class indices in [0, {k})")
    return y


def fit_weights(
    probs_dev: Mapping[str, np.ndarray],
    y_dev,
    seed: int = 0,
    *,
    start: Mapping[str, float] | None = None,
    steps: int = 500,
    lr: float = 0.5,
    tol: float = 1e-9,
) -> dict[str, float]:
    """Simplex weights minimising the ensemble's dev log-loss (exponentiated gradient).

    `start`: the starting weights (e.g. the seed weights; a member starting at 0 stays at 0);
    None: a seeded mix of uniform and random weights.
    Returns {member: weight}, summing to 1, rounded to 6 decimals.
    """
    names, P = _check(probs_dev)
    y = _check_labels(y_dev, P.shape[1], P.shape[2])
    if len(names) == 1:
        return {names[0]: 1.0}
    if P.shape[1] == 0:
        raise EnsembleError("cannot fit weights on zero dev rows")
    py = P[:, np.arange(P.shape[1]), y]  # (m, n): each member's prob of the true class
    if start is not None:
        w = np.array([float(start.get(m, 0.0)) for m in names])
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise EnsembleError(f"start weights must be finite, >= 0 and not all 0, got {dict(start)}")
        w = w / w.sum()
    else:
        rng = np.random.default_rng(seed)
        w = 0.5 * np.full(len(names), 1.0 / len(names)) + 0.5 * rng.dirichlet(np.ones(len(names)))
    prev = np.inf
    for _ in range(steps):
        q = np.clip(w @ py, 1e-12, None)
        loss = -np.mean(np.log(q))
        grad = -(py / q).mean(axis=1)
        w = w * np.exp(-lr * (grad - grad.min()))
        w /= w.sum()
        if abs(prev - loss) < tol:
            break
        prev = loss
    return {m: round(float(x), 6) for m, x in zip(names, w)}


def contributions(
    probs_dev: Mapping[str, np.ndarray], y_dev, weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Leave-one-out: ensemble dev macro-F1 with all members minus without member m (the
    remaining weights renormalised). With one member, or when every remaining member has weight 0
    (fitted weights can put all the weight on one member), "without" is the majority-class
    baseline: members of weight 0 vote for nothing."""
    names, P = _check(probs_dev)
    k = P.shape[2]
    y = _check_labels(y_dev, P.shape[1], k)
    full = macro_f1(y, combine(probs_dev, weights).argmax(1), k)
    out = {}
    for m in names:
        rest = {o: probs_dev[o] for o in names if o != m}
        if rest and weights is not None and sum(float(weights[o]) for o in rest) <= 0:
            rest = {}
        if rest:
            without = macro_f1(y, combine(rest, weights).argmax(1), k)
        else:
            without = macro_f1(y, np.full(len(y), np.bincount(y, minlength=k).argmax()), k)
        out[m] = round(full - without, 6)
    return out


def imbalance_ratio(contribs: Mapping[str, float]) -> float:
    """Largest / smallest contribution; inf when the smallest is <= 0 while the largest is > 0
    (a member that adds nothing next to one that carries the ensemble); nan when no member
    contributes anything or there are fewer than two members."""
    vals = list(contribs.values())
    if len(vals) < 2:
        return float("nan")
    hi, lo = max(vals), min(vals)
    if hi <= 0:
        return float("nan")
    if lo <= 0:
        return float("inf")
    return hi / lo


def imbalance(contribs: Mapping[str, float], ratio: float = 3.0) -> bool:
    """Seed 001's flag: the largest contribution exceeds `ratio` times the smallest."""
    r = imbalance_ratio(contribs)
    return bool(np.isfinite(r) and r > ratio) or r == float("inf")


def report(
    probs_dev: Mapping[str, np.ndarray], y_dev, weights: Mapping[str, float] | None = None, ratio: float = 3.0
) -> dict:
    """Everything the evaluate/predict stages record about the ensemble on dev, JSON-ready."""
    names, P = _check(probs_dev)
    y = _check_labels(y_dev, P.shape[1], P.shape[2])
    w = normalised_weights(names, weights)
    ens = combine(probs_dev, w)
    contrib = contributions(probs_dev, y, w)
    r = imbalance_ratio(contrib)
    return {
        "weights": w,
        "dev_macro_f1": macro_f1(y, ens.argmax(1), P.shape[2]),
        "dev_log_loss": log_loss(ens, y),
        "member_dev_macro_f1": {m: macro_f1(y, P[i].argmax(1), P.shape[2]) for i, m in enumerate(names)},
        "contributions": contrib,
        "imbalance_ratio": None
        if not np.isfinite(r) and r != float("inf")
        else ("inf" if r == float("inf") else round(r, 4)),
        "imbalanced": imbalance(contrib, ratio),
    }
