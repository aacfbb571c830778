"""Threshold schedules: values over iterations, and the correction they allow."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import schedule, tiny_params
from sentiloop import correction, pipeline, schedules
from sentiloop.errors import SettingsError
from sentiloop.settings._base import validate_section
from sentiloop.settings.loop import Schedule


def test_constant_and_linear_values():
    assert schedules.schedule_table(schedule("constant", 0.8, 0.5), 3) == [0.8, 0.8, 0.8]
    assert schedules.schedule_table(schedule("linear", 0.9, 0.7), 3) == pytest.approx([0.9, 0.8, 0.7])
    assert schedules.schedule_table(schedule("linear", 0.9, 0.7), 1) == [0.9]


def test_curriculum_admits_the_configured_share():
    conf = np.linspace(0.5, 1.0, 1000)
    th = schedules.class_thresholds(schedule("curriculum", 0.1, 0.3), 1, 2, conf,
                                    np.zeros(1000, int), np.ones(1000, int), 2)
    assert np.mean(conf >= th[0]) == pytest.approx(0.1, abs=0.002)
    th2 = schedules.class_thresholds(schedule("curriculum", 0.1, 0.3), 2, 2, conf,
                                     np.zeros(1000, int), np.ones(1000, int), 2)
    assert np.mean(conf >= th2[0]) == pytest.approx(0.3, abs=0.002)


def test_class_balanced_limits_drift_towards_one_class():
    rng = np.random.default_rng(0)
    n = 2000
    current = rng.integers(0, 2, n)
    proposed = np.where(rng.random(n) < 0.3, 1, current)        # the ensemble pushes towards class 1
    conf = rng.uniform(0.5, 1.0, n)
    sched = schedule("class_balanced", 0.6, 0.6, max_drift=0.02)
    th = schedules.class_thresholds(sched, 1, 1, conf, proposed, current, 2)
    take = (conf >= th[proposed]) & (proposed != current)
    gained = np.sum(take & (proposed == 1)) - np.sum(take & (current == 1))
    assert gained / n <= 0.02 + 1e-9
    assert th[1] > 0.6 and th[0] == pytest.approx(0.6)
    plain = schedules.class_thresholds(schedule("linear", 0.6, 0.6), 1, 1, conf, proposed, current, 2)
    take_plain = (conf >= plain[proposed]) & (proposed != current)
    assert (np.sum(take_plain & (proposed == 1)) / n) > 0.05      # without balancing it drifts far more


@pytest.mark.parametrize("bad, message", [
    ({"name": "cosine", "start": 0.9, "end": 0.8, "max_drift": 0.02},
     "schedule.name = 'cosine': must be one of 'constant', 'linear', 'curriculum', 'class_balanced'"),
    ({"name": "linear", "start": 1.5, "end": 0.8, "max_drift": 0.02}, r"schedule.start = 1.5: must be in \(0, 1\]")])
def test_bad_schedules_are_refused(bad, message):
    with pytest.raises(SettingsError, match=message):
        validate_section(Schedule, bad, prefix=("schedule",))


def test_change_cap_keeps_the_most_confident():
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(10)], "current_label": ["negative"] * 10, "locked": 0,
                         "ens_label": ["positive"] * 10, "confidence": np.linspace(0.91, 1.0, 10)})
    d = correction.decide(rows, ["negative", "positive"], schedule("constant", 0.9, 0.9), 1, 1,
                          change_cap=0.3)
    assert list(d.changes["id"]) == ["r9", "r8", "r7"] and d.capped == 7


@pytest.mark.parametrize("schedule", [
    {"name": "constant", "start": 0.62, "end": 0.62},
    {"name": "linear", "start": 0.66, "end": 0.6},
    {"name": "curriculum", "start": 0.05, "end": 0.2},
    {"name": "class_balanced", "start": 0.66, "end": 0.6, "max_drift": 0.02},
])  # tiny_params adds max_drift (0.02) where a schedule has none
def test_every_schedule_runs_the_loop_and_improves_labels(noisy_corpus, base_params, tmp_path, schedule):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=2, schedule=schedule, change_cap=0.2)
    s = pipeline.run_loop(params, tmp_path / "run")
    assert s["iterations"][-1]["gold/label_accuracy"] > s["iterations"][0]["gold/label_accuracy"]


def test_llm_answers_come_before_the_ensemble_and_protect_confirmed_labels():
    rows = pd.DataFrame({"id": ["a", "b", "c"], "current_label": ["negative"] * 3, "locked": [0, 0, 1],
                         "ens_label": ["positive"] * 3, "confidence": [0.99, 0.99, 0.99]})
    answers = pd.DataFrame({"id": ["a", "b", "c"], "llm_label": ["negative", "positive", "positive"],
                            "llm_confidence": [0.9, 0.9, 0.9], "rationale": "r", "model": "m",
                            "status": ["answered", "cached", "answered"]})
    d = correction.decide(rows, ["negative", "positive"], schedule("constant", 0.9, 0.9), 1, 1,
                          change_cap=1.0, llm_answers=answers, llm_min_confidence=0.7)
    # a: the LLM confirmed "negative", so the ensemble may not flip it; b: changed by the LLM; c: locked
    assert d.changes[["id", "new_label", "source"]].values.tolist() == [["b", "positive", "llm"]]


def test_curriculum_share_is_of_candidate_corrections_not_of_all_rows():
    rng = np.random.default_rng(1)
    n = 1000
    current = np.zeros(n, int)
    proposed = np.where(np.arange(n) < 100, 1, 0)         # only 100 rows would change label
    conf = rng.uniform(0.5, 1.0, n)
    conf[100:] += 0.5                                      # agreeing rows are the most confident
    th = schedules.class_thresholds(schedule("curriculum", 0.5, 0.5), 1, 1, conf,
                                    proposed, current, 2)
    admitted = (conf >= th[proposed]) & (proposed != current)
    assert admitted.sum() == 50                            # half of the 100 candidates
