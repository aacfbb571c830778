"""The correction rule: from the posterior of the true class to flip / keep / set aside.

Every iteration judges each free train row against its *original* label, so earlier decisions
are revisable (a flip the new evidence no longer supports reverts; an aside row comes back):

- flip to class c when P(true = c | x, original label) >= `flip_at` (this iteration's value of
  the schedule) and every member with a positive weight predicts c out-of-fold (`agree`);
- hold an earlier flip while its class keeps P >= `hold_at` (hysteresis: a flip is not undone by
  a small wobble of the estimate);
- set aside a row that is not flipped but whose label is wrong with P >= `aside_at` and is no
  longer the most probable class: it is excluded from training, queued for review, still
  predicted, and judged again next time;
- curriculum: at most `budget` flips (a share of the estimated number of wrong labels), surest
  first;
- drift guard: no class may end with more than its estimated true share + `max_drift` of the
  rows because of flips; the weakest flips into it are dropped first. The estimated true mix,
  not the noisy label shares, is the reference: under class-conditional noise the noisy shares
  are exactly what must move.
Locked (human) rows and rows settled by an annotator this iteration are not judged here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sentiloop.errors import SentiloopError

KEEP, FLIP, HOLD, REVERT = "keep", "flip", "hold", "revert"


class JudgementError(SentiloopError, ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    flip_at: float  # posterior bar for a flip (the schedule's knob)
    hold_at: float  # posterior an earlier flip needs to stay
    aside_at: float  # P(original label wrong) that sets a row aside
    agree: bool  # every weighted member must predict the flip's class out-of-fold
    max_drift: float  # a class's share may exceed its estimated true share by this much
    budget: int | None = None  # most flips this iteration (curriculum); None = no limit


@dataclass
class Verdict:
    """Per row: the new label (class code), whether it is set aside, and why."""

    label: np.ndarray  # int64 (n,)
    aside: np.ndarray  # bool (n,)
    p_wrong: np.ndarray  # float (n,): P(original label wrong)
    action: np.ndarray  # object (n,): keep / flip / hold / revert
    strength: np.ndarray  # float (n,): posterior of the chosen label
    dropped_by_budget: int
    dropped_by_drift: int


def judge(
    posterior: np.ndarray,
    original: np.ndarray,
    current: np.ndarray,
    member_votes: np.ndarray,
    prior: np.ndarray,
    rule: Rule,
) -> Verdict:
    """Judge n free rows.

    posterior: (n, k) P(true class | x, original label); original, current: (n,) class codes;
    member_votes: (n, m) each weighted member's out-of-fold argmax (m may be 0); prior: (k,)
    the estimated true class mix."""
    posterior = np.asarray(posterior, dtype=np.float64)
    n, k = posterior.shape if posterior.ndim == 2 else (0, 0)
    original = np.asarray(original, dtype=np.int64)
    current = np.asarray(current, dtype=np.int64)
    votes = np.asarray(member_votes, dtype=np.int64).reshape(n, -1)
    if len(original) != n or len(current) != n:
        raise JudgementError(f"{n} posteriors but {len(original)} original and {len(current)} current labels")
    for name, v in (("flip_at", rule.flip_at), ("hold_at", rule.hold_at), ("aside_at", rule.aside_at)):
        if not 0 < v <= 1:
            raise JudgementError(f"{name} = {v}: must be in (0, 1]")
    rows = np.arange(n)
    target = posterior.argmax(axis=1) if n else np.zeros(0, np.int64)
    strength = posterior[rows, target] if n else np.zeros(0)
    p_wrong = 1.0 - posterior[rows, original] if n else np.zeros(0)
    agreed = (votes == target[:, None]).all(axis=1) if (rule.agree and votes.shape[1]) else np.ones(n, bool)

    flip = (target != original) & (strength >= rule.flip_at) & agreed
    was_flipped = current != original
    hold = was_flipped & ~flip & (posterior[rows, current] >= rule.hold_at)
    label = original.copy()
    label[flip] = target[flip]
    label[hold] = current[hold]
    chosen_strength = posterior[rows, label] if n else np.zeros(0)

    changed = label != original
    dropped_budget = 0
    if rule.budget is not None and changed.sum() > rule.budget:
        order = np.argsort(-chosen_strength[changed], kind="stable")
        idx = np.nonzero(changed)[0][order]
        drop = idx[int(rule.budget) :]
        label[drop] = original[drop]
        dropped_budget = len(drop)
    dropped_drift = _drift_guard(label, original, chosen_strength, prior, rule.max_drift, k)

    changed = label != original
    action = np.full(n, KEEP, dtype=object)
    action[changed & (label == current) & was_flipped] = HOLD
    action[changed & ~((label == current) & was_flipped)] = FLIP
    action[~changed & was_flipped] = REVERT
    # suspect: the label is no longer the most probable class. With two classes that is
    # p_wrong > 0.5; with more, a p_wrong spread over several other classes leaves the label the
    # best guess, and setting such rows aside would only thin the classes the members read worst.
    not_best = posterior[rows, original] < strength if n else np.zeros(0, bool)
    aside = ~changed & (p_wrong >= rule.aside_at) & not_best
    return Verdict(
        label=label,
        aside=aside,
        p_wrong=p_wrong,
        action=action,
        strength=chosen_strength,
        dropped_by_budget=dropped_budget,
        dropped_by_drift=dropped_drift,
    )


def _drift_guard(
    label: np.ndarray, original: np.ndarray, strength: np.ndarray, prior: np.ndarray, max_drift: float, k: int
) -> int:
    """Drop the weakest flips into any class whose share would exceed prior + max_drift (in place)."""
    n = len(label)
    if n == 0:
        return 0
    dropped = 0
    limit = (np.asarray(prior, dtype=np.float64) + max_drift) * n
    for c in range(k):
        excess = int(np.ceil((label == c).sum() - limit[c]))
        if excess <= 0:
            continue
        into = np.nonzero((label == c) & (original != c))[0]
        if not len(into):
            continue
        weakest = into[np.argsort(strength[into], kind="stable")][:excess]
        label[weakest] = original[weakest]
        dropped += len(weakest)
    return dropped
