"""Schedules: the correction rule's scale-free knob, iteration by iteration.

The knob is a posterior probability, not a raw ensemble confidence, so the same value means the
same thing whatever the members, the corpus or the noise level (sentiloop.noise_model turns
out-of-fold scores into P(true class | x, given label)):
  constant        the same posterior bar for a flip every iteration
  linear          the bar moves start -> end (strict while the first models judge, looser later)
  curriculum      a growing share (start -> end) of the *estimated* wrong labels may flip,
                  surest first, never under correction.flip_floor
  class_balanced  the linear bar with a tight drift guard (schedule.max_drift) against the
                  estimated true class mix
`dvc exp run --queue -S schedule=<name>` compares how they converge.
"""

from __future__ import annotations

from sentiloop.errors import SentiloopError
from sentiloop.settings.loop import SCHEDULES, Schedule


class ScheduleError(SentiloopError, ValueError):
    pass


def scheduled_value(schedule: Schedule, k: int, n: int) -> float:
    """The schedule's value at iteration k of n (1-based): a posterior bar, or a share for curriculum."""
    name = schedule.name
    if name not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    if not 1 <= k <= n:
        raise ScheduleError(f"iteration {k} outside 1..{n}")
    start, end = schedule.start, schedule.end
    if name == "constant":
        return start
    return start if n == 1 else start + (end - start) * (k - 1) / (n - 1)


def schedule_table(schedule: Schedule, n: int) -> list[float]:
    return [scheduled_value(schedule, k, n) for k in range(1, n + 1)]
