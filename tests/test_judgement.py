"""Each part of the correction rule, on posteriors with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from sentiloop import judgement
from sentiloop.judgement import Rule

RULE = Rule(flip_at=0.9, hold_at=0.5, aside_at=0.5, agree=True, max_drift=1.0)


def _post(p1):
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], axis=1)


def test_flips_only_on_strong_evidence():
    post = _post([0.95, 0.8, 0.2])  # original label 0 for all
    v = judgement.judge(post, [0, 0, 0], [0, 0, 0], np.ones((3, 0)), [0.5, 0.5], RULE)
    assert v.label.tolist() == [1, 0, 0]
    assert v.action.tolist() == ["flip", "keep", "keep"]
    assert v.aside.tolist() == [False, True, False]  # 0.8 wrong but not sure enough: aside
    assert v.p_wrong == pytest.approx([0.95, 0.8, 0.2])


def test_with_three_classes_a_label_that_is_still_the_best_guess_is_not_set_aside():
    # original label 0 everywhere; P(wrong) is 0.6 in both rows, but only in the second is
    # another class more probable than the label
    post = np.array([[0.4, 0.35, 0.25], [0.4, 0.55, 0.05]])
    v = judgement.judge(post, [0, 0], [0, 0], np.ones((2, 0)), [1 / 3] * 3, RULE)
    assert v.label.tolist() == [0, 0]
    assert v.p_wrong == pytest.approx([0.6, 0.6])
    assert v.aside.tolist() == [False, True]


def test_members_must_agree():
    post = _post([0.95, 0.95])
    votes = np.array([[1, 1], [1, 0]])  # the second row: one member disagrees
    v = judgement.judge(post, [0, 0], [0, 0], votes, [0.5, 0.5], RULE)
    assert v.label.tolist() == [1, 0] and v.aside.tolist() == [False, True]
    loose = Rule(**{**RULE.__dict__, "agree": False})
    assert judgement.judge(post, [0, 0], [0, 0], votes, [0.5, 0.5], loose).label.tolist() == [1, 1]


def test_an_earlier_flip_holds_above_hold_at_and_reverts_below():
    post = _post([0.7, 0.3])  # both flipped to 1 earlier
    v = judgement.judge(post, [0, 0], [1, 1], np.ones((2, 0)), [0.5, 0.5], RULE)
    assert v.label.tolist() == [1, 0]
    assert v.action.tolist() == ["hold", "revert"]


def test_curriculum_budget_takes_the_surest():
    post = _post([0.99, 0.95, 0.97, 0.92])
    rule = Rule(**{**RULE.__dict__, "budget": 2})
    v = judgement.judge(post, [0] * 4, [0] * 4, np.ones((4, 0)), [0.5, 0.5], rule)
    assert v.label.tolist() == [1, 0, 1, 0] and v.dropped_by_budget == 2


def test_drift_guard_is_against_the_estimated_true_mix():
    # 100 rows labelled 0; the evidence says 40 are really 1 and the noise model agrees (prior 0.4)
    post = _post([0.95] * 40 + [0.05] * 60)
    orig = np.zeros(100, int)
    ok = judgement.judge(post, orig, orig, np.ones((100, 0)), [0.6, 0.4], Rule(**{**RULE.__dict__, "max_drift": 0.05}))
    assert (ok.label == 1).sum() == 40 and ok.dropped_by_drift == 0
    # the same flips against an estimated mix of 20% class 1: only up to 25% may end there
    tight = judgement.judge(
        post, orig, orig, np.ones((100, 0)), [0.8, 0.2], Rule(**{**RULE.__dict__, "max_drift": 0.05})
    )
    assert (tight.label == 1).sum() == 25 and tight.dropped_by_drift == 15


def test_bad_rule_values_are_refused():
    with pytest.raises(judgement.JudgementError, match="flip_at = 0: must be in"):
        judgement.judge(_post([0.5]), [0], [0], np.ones((1, 0)), [0.5, 0.5], Rule(**{**RULE.__dict__, "flip_at": 0}))
