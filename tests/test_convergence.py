"""Each termination reason, and what happens to the iterations after it."""

from __future__ import annotations

import pytest

from conftest import tiny_params
from sentiloop import convergence, pipeline
from sentiloop.convergence import LoopState
from sentiloop.settings.loop import Convergence

CFG = Convergence(
    min_iterations=0, label_change_eps=0.01, dict_change_eps=0.001, patience=2, min_delta=0.01, noise_eps=0.0
)


def test_label_change_rate_stops():
    assert convergence.check(LoopState(), CFG, last_label_change=0.005, last_dict_change=None) == (
        True,
        "label_change_rate",
    )


def test_no_stop_before_min_iterations():
    cfg = CFG.model_copy(update={"min_iterations": 2})
    one_done = LoopState(history=[{"k": 1}])
    assert convergence.check(one_done, cfg, last_label_change=0.0, last_dict_change=0.0) == (False, None)
    two_done = LoopState(history=[{"k": 1}, {"k": 2}])
    assert convergence.check(two_done, cfg, last_label_change=0.0, last_dict_change=0.0) == (True, "label_change_rate")


def test_dictionary_change_rate_stops():
    assert convergence.check(LoopState(), CFG, last_label_change=0.5, last_dict_change=0.0005) == (
        True,
        "dictionary_change_rate",
    )


def test_plateau_needs_patience():
    state = LoopState(dev_f1=[0.70, 0.705, 0.704])
    assert convergence.check(state, CFG, last_label_change=0.5, last_dict_change=0.5) == (True, "plateau")
    assert convergence.check(LoopState(dev_f1=[0.70, 0.705]), CFG, last_label_change=0.5, last_dict_change=0.5) == (
        False,
        None,
    )
    assert not convergence.plateaued([0.70, 0.72, 0.74], 2, 0.01)


def test_stops_when_the_verdicts_expected_gain_is_negligible():
    cfg = CFG.model_copy(update={"noise_eps": 0.002})
    moving = LoopState(expected_gain=[0.08, 0.03])
    assert convergence.check(moving, cfg, last_label_change=0.5, last_dict_change=0.5) == (False, None)
    still = LoopState(expected_gain=[0.08, 0.03, 0.001])
    assert convergence.check(still, cfg, last_label_change=0.5, last_dict_change=0.5) == (True, "expected_gain")
    assert convergence.check(still, CFG, last_label_change=0.5, last_dict_change=0.5) == (False, None)  # 0 = off


def test_max_iterations_when_nothing_else():
    state = convergence.finish(
        LoopState(k=3, dev_f1=[0.6, 0.7, 0.8, 0.9]), CFG, 3, last_label_change=0.5, last_dict_change=0.5
    )
    assert (state.termination_reason, state.converged_at) == ("max_iterations", 3)


@pytest.mark.parametrize(
    "convergence_cfg, reason",
    [
        ({"label_change_eps": 0.9, "dict_change_eps": 0.0, "patience": 50, "min_delta": 0.0}, "label_change_rate"),
        ({"label_change_eps": 0.0, "dict_change_eps": 0.9, "patience": 50, "min_delta": 0.0}, "dictionary_change_rate"),
        ({"label_change_eps": 0.0, "dict_change_eps": 0.0, "patience": 1, "min_delta": 0.5}, "plateau"),
        ({"label_change_eps": 0.0, "dict_change_eps": 0.0, "patience": 50, "min_delta": 0.0}, "max_iterations"),
    ],
)
def test_loop_records_reason_and_passes_through(noisy_corpus, base_params, tmp_path, convergence_cfg, reason):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=3)
    params["convergence"] = {**params["convergence"], **convergence_cfg}
    summary = pipeline.run_loop(params, tmp_path / "run")
    assert summary["termination_reason"] == reason
    if reason != "max_iterations":
        assert summary["converged_at"] < 3
        # after convergence: labels and models pass through unchanged
        after = summary["iterations"][summary["converged_at"] + 1 :]
        assert all(rec.get("passed_through") == 1 and rec["label_change_rate"] == 0.0 for rec in after[:-1] or after)
        k = summary["converged_at"] + 1
        a = (tmp_path / f"run/models/it{k}/lexicon/dictionary.tsv").read_bytes()
        b = (tmp_path / f"run/models/it{k - 1}/lexicon/dictionary.tsv").read_bytes()
        assert a == b
    else:
        assert summary["converged_at"] == 3
