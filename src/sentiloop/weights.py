"""Ensemble weights that follow the evidence, and a record of why they are what they are.

Why: seed 001's fixed weights (BERT 0.30, BiLSTM 0.30, LSTM 0.25, lexicon 0.15) assume every
member reads the corpus. On Korean, an English-only encoder is a majority-class baseline that
kept 0.30 of the vote; in general a member's worth depends on the corpus, so the weights are
measured each iteration:

1. A member whose accuracy on the evidence rows is at or below the majority-class baseline
   (always answering the most frequent label) carries no signal: weight 0, with the reason
   recorded. If *every* member is at or below it, nothing is learned from zeroing them all:
   the seed weights stay, and the record says so.
2. The remaining members' weights minimise the ensemble's log-loss on the evidence rows
   (`ensemble.fit_weights`, convex), starting from the seed weights. The seed weights are the
   fallback when fitting is off, when there are too few evidence rows, or when the fit does
   not beat them.

Evidence rows (`ensemble.weights_from`, `auto` by default):
- `dev` (auto without cross-fitting): the dev split, predicted by the full models.
- `oof` (auto when every member is cross-fitted: `loop.cross_fit` >= 2 and all in
  `loop.cross_fit_members`): the train rows' out-of-fold predictions against
  their current labels. Reasons: there are ~8x more train rows than dev rows (the weights and
  the baseline check are less noisy); they are exactly the predictions the weights combine to
  decide corrections; and the dev split stays out of the fit, so the dev macro-F1 that drives
  the plateau criterion and the gate is not measured on the rows that chose the weights.
  The caveat: current train labels include the loop's own earlier corrections, which agree
  with the ensemble by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from sentiloop import ensemble

WEIGHTS_FROM = ("auto", "dev", "oof")
MIN_ROWS = 30  # fewer evidence rows than this: keep the seed weights (a fit would be noise)


@dataclass
class WeightDecision:
    """The weights one iteration uses and the evidence behind them (JSON-ready via to_dict)."""

    weights: dict[str, float]
    method: str  # fitted | seed
    evidence: str  # dev | oof | none
    n_rows: int
    majority_accuracy: float | None = None
    member_accuracy: dict[str, float] = field(default_factory=dict)
    zeroed: dict[str, str] = field(default_factory=dict)  # member -> why its weight is 0
    fallback: str | None = None  # why the seed weights were kept (method == seed)
    log_loss: dict[str, float] = field(default_factory=dict)  # seed / fitted, on the evidence

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evidence_source(weights_from: str | None, cross_fit: int) -> str:
    """Which rows the weights are fitted on: 'oof' when cross-fitting (K >= 2), else 'dev'."""
    w = (weights_from or "auto").lower()
    if w not in WEIGHTS_FROM:
        raise ensemble.EnsembleError(f"ensemble.weights_from must be one of {WEIGHTS_FROM}, got {weights_from!r}")
    if w == "oof" and cross_fit < 2:
        raise ensemble.EnsembleError(
            "ensemble.weights_from=oof needs loop.cross_fit >= 2 with every member in loop.cross_fit_members "
            "(out-of-fold predictions exist only when cross-fitting)"
        )
    if w == "auto":
        return "oof" if cross_fit >= 2 else "dev"
    return w


def _restricted(seed: Mapping[str, float], keep: list[str]) -> dict[str, float]:
    total = sum(seed[m] for m in keep)
    return {m: (seed[m] / total if m in keep and total > 0 else 0.0) for m in seed}


def choose_weights(
    probs: Mapping[str, np.ndarray],
    y,
    seed_weights: Mapping[str, float] | None,
    *,
    fit: bool = True,
    evidence: str = "dev",
    seed: int = 0,
    min_rows: int = MIN_ROWS,
) -> WeightDecision:
    """Weights for the members of `probs` from their predictions on the evidence rows `y`.

    `seed_weights`: the configured (seed 001) weights, the starting point and the fallback.
    Returns a WeightDecision whose `weights` cover every member and sum to 1."""
    names = list(probs)
    seed_w = ensemble.normalised_weights(names, seed_weights)
    y = np.asarray(y)
    n = int(len(y))
    if n == 0:
        return WeightDecision(dict(seed_w), "seed", "none", 0, fallback="no evidence rows")
    _, P = ensemble._check(probs)
    y = ensemble._check_labels(y, P.shape[1], P.shape[2])
    majority = float(np.bincount(y, minlength=P.shape[2]).max() / n)
    acc = {m: float((P[i].argmax(axis=1) == y).mean()) for i, m in enumerate(names)}
    out = WeightDecision(
        dict(seed_w), "seed", evidence, n, round(majority, 6), {m: round(a, 6) for m, a in acc.items()}
    )
    if n < min_rows:
        out.fallback = f"only {n} {evidence} rows (< {min_rows}): too few to judge the members"
        return out
    at_baseline = [m for m in names if acc[m] <= majority]
    if len(at_baseline) == len(names):
        out.fallback = (
            f"every member is at or below the majority-class baseline "
            f"({majority:.4f} {evidence} accuracy): nothing to prefer, seed weights kept"
        )
        return out
    out.zeroed = {m: f"{evidence} accuracy {acc[m]:.4f} <= majority-class baseline {majority:.4f}" for m in at_baseline}
    keep = [m for m in names if m not in out.zeroed]
    if sum(seed_w[m] for m in keep) <= 0:
        out.fallback = "every member above the baseline has seed weight 0: seed weights kept"
        out.zeroed = {}
        return out
    start = _restricted(seed_w, keep)
    out.weights = start
    loss_seed = ensemble.log_loss(ensemble.combine({m: probs[m] for m in keep}, start), y)
    out.log_loss = {"seed": round(loss_seed, 6)}
    if not fit:
        out.fallback = "ensemble.fit_weights is off"
        return out
    live = [m for m in keep if start[m] > 0]  # a seed weight of 0 stays 0 (multiplicative updates)
    fitted = ensemble.fit_weights({m: probs[m] for m in live}, y, seed, start={m: start[m] for m in live})
    fitted = {m: float(fitted.get(m, 0.0)) for m in names}
    loss_fit = ensemble.log_loss(ensemble.combine({m: probs[m] for m in live}, {m: fitted[m] for m in live}), y)
    out.log_loss["fitted"] = round(loss_fit, 6)
    if not loss_fit <= loss_seed + 1e-12:
        out.fallback = f"the fit did not lower the {evidence} log-loss ({loss_fit:.6f} vs seed {loss_seed:.6f})"
        return out
    out.weights, out.method = fitted, "fitted"
    return out
