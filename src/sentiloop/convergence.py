"""When the loop stops, and why (like scikit-learn's SelfTrainingClassifier.termination_condition_).

Checked at the start of each iteration over everything the previous ones measured, once at
least `min_iterations` have run:
  label_change_rate       fewer than eps of the train labels changed in the last iteration
  dictionary_change_rate  the lexicon's dictionary changed less than eps in the last retrain
  plateau                 dev macro-F1 of the ensemble has not improved by min_delta for
                          `patience` iterations
  expected_gain           applying this iteration's verdicts would raise the expected label
                          accuracy (under the noise model's posteriors) by less than noise_eps:
                          the rule has nothing left worth changing
  max_iterations          none of the above before the last iteration
Once converged, later iterations pass their inputs through unchanged and keep the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sentiloop.settings.loop import Convergence

REASONS = ("label_change_rate", "dictionary_change_rate", "plateau", "expected_gain", "max_iterations")


@dataclass
class LoopState:
    k: int = 0
    converged: bool = False
    termination_reason: str | None = None
    converged_at: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished iteration
    dev_f1: list[float] = field(default_factory=list)  # ensemble dev macro-F1 of models it0, it1, ...
    noise_rate: list[float] = field(default_factory=list)  # estimated noise rate of the original labels, it1, it2, ...
    expected_gain: list[float] = field(
        default_factory=list
    )  # expected label-accuracy gain of it1's, it2's, ... verdicts
    residual_noise: list[float] = field(default_factory=list)  # estimated wrong-label share left in training, it1, ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoopState":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def plateaued(scores: list[float], patience: int, min_delta: float) -> bool:
    """True when none of the last `patience` scores beat the best before them by min_delta."""
    if patience < 1 or len(scores) <= patience:
        return False
    best_before = max(scores[:-patience])
    return max(scores[-patience:]) < best_before + min_delta


def check(
    state: LoopState, cfg: Convergence, *, last_label_change: float | None, last_dict_change: float | None
) -> tuple[bool, str | None]:
    """Has the loop converged given what the last finished iteration measured?

    No criterion fires before `min_iterations` iterations have run: a schedule that starts strict
    changes few labels at first, and that is not a fixed point of the looser iterations to come.
    """
    if state.converged:
        return True, state.termination_reason
    if len(state.history) < cfg.min_iterations:
        return False, None
    if last_label_change is not None and last_label_change < cfg.label_change_eps:
        return True, "label_change_rate"
    if last_dict_change is not None and last_dict_change < cfg.dict_change_eps:
        return True, "dictionary_change_rate"
    if plateaued(state.dev_f1, cfg.patience, cfg.min_delta):
        return True, "plateau"
    if cfg.noise_eps > 0 and state.expected_gain and state.expected_gain[-1] < cfg.noise_eps:
        return True, "expected_gain"
    return False, None


def finish(
    state: LoopState,
    cfg: Convergence,
    max_iterations: int,
    *,
    last_label_change: float | None,
    last_dict_change: float | None,
) -> LoopState:
    """The final verdict after the last iteration: a criterion met at the end, or max_iterations."""
    if not state.converged:
        done, reason = check(state, cfg, last_label_change=last_label_change, last_dict_change=last_dict_change)
        state.converged = True
        state.termination_reason = reason if done else "max_iterations"
        state.converged_at = max_iterations
    return state
