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
    """conf/schedule/<name>.yaml: the correction rule's scale-free knob per iteration. For
    constant, linear and class_balanced, start/end are the posterior bar P(true class | x, label)
    a flip needs; for curriculum, the share of the estimated wrong labels that may be flipped
    (surest first, never below correction.flip_floor)."""

    name: Literal["constant", "linear", "curriculum", "class_balanced"]
    start: Threshold
    end: Threshold
    # drift guard: flips may not lift a class's share above its estimated true share + max_drift
    max_drift: Share | None

    @model_validator(mode="after")
    def _drift(self):
        if self.max_drift is None and self.name != "curriculum":
            raise fail(f"schedule.max_drift = null: schedule={self.name} needs a per-class drift bound in [0, 1]")
        if self.name == "curriculum" and self.start > self.end:
            raise fail(f"schedule.start = {self.start}: a curriculum's share must not shrink (end = {self.end})")
        return self


class Loop(Section):
    max_iterations: PosInt
    cross_fit: NonNegInt  # 0 = judge in-sample; K >= 2 folds
    cross_fit_members: list[str]  # members refitted on the folds; the others are not evidence on train rows
    chunk_size: PosInt
    guard: bool  # retrain keeps the best on dev of strategy / scratch / previous model
    guard_scratch: list[str]  # members whose guard also fits a scratch model (a second full fit)

    @model_validator(mode="after")
    def _folds(self):
        if self.cross_fit == 1:
            raise fail("loop.cross_fit = 1: must be 0 (judge in-sample) or >= 2 folds")
        return self


class Correction(Section):
    aside_at: Threshold  # P(label wrong) at which an unflipped row is set aside
    hold_at: Threshold  # posterior an earlier flip needs to stay
    agree: bool  # every weighted member must predict a flip's class out-of-fold
    flip_floor: Threshold  # curriculum: the lowest posterior bar a flip may have
    anchor_share: Share  # rows per class that anchor the noise matrix estimate
    em_steps: NonNegInt  # EM refinements of the noise matrix
    queue_at: Share  # P(label wrong) at which a row is queued for the annotator
    relabel_queue_max: NonNegInt

    @model_validator(mode="after")
    def _anchors(self):
        if self.anchor_share <= 0:
            raise fail(f"correction.anchor_share = {self.anchor_share}: must be in (0, 1]")
        return self


class Analysis(Section):
    max_drift: Share


class Convergence(Section):
    min_iterations: NonNegInt
    label_change_eps: Share
    dict_change_eps: Share
    patience: NonNegInt
    min_delta: NonNegFloat
    noise_eps: Share  # stop when the verdicts' expected label-accuracy gain is below this (0 = off)
