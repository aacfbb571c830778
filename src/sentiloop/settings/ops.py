"""The ensemble, and what happens after the loop: gate, feedback, report; the hardware profile."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from sentiloop.settings._base import NonNegFloat, NonNegInt, PosFloat, PosInt, Section, Share, fail

MemberKind = Literal["lexicon", "lstm", "bilstm", "bert"]


class Ensemble(Section):
    members: list[MemberKind]
    weights: dict[str, NonNegFloat]  # one per member; renormalised over the members
    fit_weights: bool  # fit them on the evidence rows every iteration (the seed weights: start, fallback)
    weights_from: Literal["auto", "dev", "oof"]  # evidence rows; auto: oof when loop.cross_fit >= 2, else dev

    @model_validator(mode="after")
    def _members(self):
        if not self.members:
            raise fail("ensemble.members = []: enable at least one of lexicon, lstm, bilstm, bert")
        if len(set(self.members)) != len(self.members):
            raise fail(f"ensemble.members = {self.members}: a member is listed twice")
        missing = [m for m in self.members if m not in self.weights]
        if missing:
            raise fail(
                f"ensemble.weights has no weight for {missing[0]}: add "
                f"ensemble.weights.{missing[0]} (weights = {self.weights})"
            )
        if sum(self.weights[m] for m in self.members) <= 0:
            raise fail(f"ensemble.weights of {self.members} sum to 0: give a member a positive weight")
        return self


class Gate(Section):
    f1_threshold: Share
    max_attempts: NonNegInt
    lr_scales: list[PosFloat]
    seed_step: NonNegInt
    retrain_from: Literal["final", "scratch"]
    webhook_timeout: PosFloat

    @model_validator(mode="after")
    def _scales(self):
        if not self.lr_scales:
            raise fail("gate.lr_scales = []: give at least one learning-rate multiplier")
        return self


class Feedback(Section):
    dir: str  # a dep of every correct@itK (dvc.yaml)
    splits: list[Literal["train", "dev"]]  # never test: it is held out


class Report(Section):
    top_words: PosInt
    max_token_rows: NonNegInt
    compare: dict[str, str]


class Review(Section):
    queue_size: PosInt  # rows in the review app's ranked queue


class Profile(Section):
    name: str
    device: str
