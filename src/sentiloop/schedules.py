"""Threshold schedules: how confident the ensemble must be before its label replaces the current one.

A fixed high threshold corrects little; a low one amplifies the ensemble's own mistakes
(confirmation bias). The schedules trade these off differently over iterations:
  constant        the same threshold every iteration
  linear          start -> end (strict first, looser once the models have improved)
  curriculum      admit a growing share of the candidate corrections (rows whose ensemble label
                  differs from the current one), most confident first: the threshold is the
                  confidence percentile that admits `share` of them, whatever the calibration
  class_balanced  the linear threshold, raised per class where corrections would drift the
                  class distribution by more than `max_drift`
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from sentiloop.errors import SentiloopError
from sentiloop.settings.loop import SCHEDULES, Schedule


class ScheduleError(SentiloopError, ValueError):
    pass


def scheduled_value(schedule: Schedule, k: int, n: int) -> float:
    """The schedule's value at iteration k of n (1-based): a threshold, or a share for curriculum."""
    name = schedule.name
    if name not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    if not 1 <= k <= n:
        raise ScheduleError(f"iteration {k} outside 1..{n}")
    start, end = schedule.start, schedule.end
    if name == "constant":
        return start
    return start if n == 1 else start + (end - start) * (k - 1) / (n - 1)


def class_thresholds(schedule: Schedule, k: int, n: int, confidence: np.ndarray, proposed: np.ndarray,
                     current: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class thresholds (indexed by the proposed label) for iteration k.

    `confidence`, `proposed` (ensemble label) and `current` (current label) are over the train
    rows eligible for correction; labels are class indices.
    """
    value = scheduled_value(schedule, k, n)
    name = schedule.name
    if name in ("constant", "linear"):
        _check_threshold(value)
        return np.full(n_classes, value)
    if name == "curriculum":
        if not 0 < value <= 1:
            raise ScheduleError(f"curriculum share must be in (0, 1], got {value}")
        # the share is of the candidate corrections (ensemble label != current label): the most
        # confident rows overwhelmingly agree with their label, so a share of all rows admits
        # almost no change at all
        candidates = confidence[proposed != current]
        if len(candidates) == 0:
            return np.full(n_classes, 1.0)
        cut = float(np.quantile(candidates, 1 - value, method="higher"))
        return np.full(n_classes, cut)
    # class_balanced
    _check_threshold(value)
    return balanced_thresholds(value, schedule.max_drift, confidence, proposed,
                               current, n_classes)


def balanced_thresholds(base: float, max_drift: float, confidence: np.ndarray, proposed: np.ndarray,
                        current: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class, the lowest threshold >= base at which the corrections into that class, net of
    those out of it, grow its share of the eligible rows by at most max_drift."""
    thresholds = np.full(n_classes, float(base))
    limit = max_drift * max(len(current), 1)
    moving = (confidence >= base) & (proposed != current)
    order = np.argsort(-confidence[moving], kind="stable")
    conf = confidence[moving][order]
    prop, cur = proposed[moving][order], current[moving][order]
    for c in range(n_classes):
        net = np.cumsum(prop == c) - np.cumsum(cur == c)   # net gain admitting the top i+1 rows
        ok = np.nonzero(net <= limit)[0]
        if len(net) == 0 or ok[-1:].size and ok[-1] == len(net) - 1:
            continue                                        # everything above base is fine
        thresholds[c] = float(np.nextafter(conf[ok[-1] + 1], np.inf)) if ok.size else np.inf
    return thresholds


def _check_threshold(value: float) -> None:
    if not 0 < value <= 1:
        raise ScheduleError(f"a confidence threshold must be in (0, 1], got {value}")


def schedule_table(schedule: Schedule, n: int) -> list[float]:
    return [scheduled_value(schedule, k, n) for k in range(1, n + 1)]
