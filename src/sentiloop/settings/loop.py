"""The loop's policy: schedule, correction, convergence, loop, analysis.

Kept apart from the rest of the settings because this is where the correction rule's knobs live
and where they change: adding a key is one line in conf/config.yaml (or conf/schedule/*.yaml)
plus one field here, with its range. No defaults here: conf/ holds them.
"""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from sentiloop.settings._base import NonNegFloat, NonNegInt, PosInt, Section, Share, Threshold, fail

SCHEDULES = ("constant", "linear", "curriculum", "class_balanced")


class Schedule(Section):
    """conf/schedule/<name>.yaml. For curriculum, start/end are shares of the candidate
    corrections; for the others, confidence thresholds."""

    name: Literal["constant", "linear", "curriculum", "class_balanced"]
    start: Threshold
    end: Threshold
    # class_balanced: a class's share may grow by at most this per iteration; constant and
    # linear use it when bias mitigation switches them to class-balanced thresholds; curriculum: null
    max_drift: Share | None

    @model_validator(mode="after")
    def _drift(self):
        if self.max_drift is None and self.name != "curriculum":
            raise fail(f"schedule.max_drift = null: schedule={self.name} needs a per-class drift bound in [0, 1]")
        return self


class Loop(Section):
    max_iterations: PosInt
    cross_fit: NonNegInt          # 0 = judge in-sample; K >= 2 folds
    chunk_size: PosInt
    change_cap: Share

    @model_validator(mode="after")
    def _folds(self):
        if self.cross_fit == 1:
            raise fail("loop.cross_fit = 1: must be 0 (judge in-sample) or >= 2 folds")
        return self


class Correction(Section):
    relabel_below: Share
    relabel_queue_max: NonNegInt


class Analysis(Section):
    max_drift: Share


class Convergence(Section):
    min_iterations: NonNegInt
    label_change_eps: Share
    dict_change_eps: Share
    patience: NonNegInt
    min_delta: NonNegFloat
