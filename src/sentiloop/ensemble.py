"""Weighted soft vote over the members, and how sure / how unanimous it is."""
from __future__ import annotations

import numpy as np

DEFAULT_WEIGHTS = {"bert": 0.30, "bilstm": 0.30, "lstm": 0.25, "lexicon": 0.15}


def normalised_weights(members: list[str], weights: dict[str, float]) -> dict[str, float]:
    w = {m: float(weights.get(m, DEFAULT_WEIGHTS.get(m, 1.0))) for m in members}
    if any(v < 0 for v in w.values()):
        raise ValueError(f"ensemble weights must be >= 0: {w}")
    total = sum(w.values())
    if total <= 0:
        raise ValueError(f"ensemble weights sum to 0: {w}")
    return {m: v / total for m, v in w.items()}


def combine(probs: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    w = normalised_weights(list(probs), weights)
    out = None
    for m, p in probs.items():
        out = w[m] * p if out is None else out + w[m] * p
    return out / out.sum(axis=1, keepdims=True)


def confidence_and_agreement(probs: dict[str, np.ndarray], ens: np.ndarray):
    """confidence: the ensemble's top probability; agreement: share of members whose top class
    is the ensemble's; variance: mean over classes of the members' probability variance."""
    top = ens.argmax(axis=1)
    conf = ens.max(axis=1)
    stacked = np.stack(list(probs.values()))            # (m, n, k)
    agree = (stacked.argmax(axis=2) == top[None, :]).mean(axis=0)
    variance = stacked.var(axis=0).mean(axis=1)
    return conf, agree, variance
