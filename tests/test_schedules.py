"""Schedules: the rule's knob over iterations, what each schedule changes in the rule, and the
loop under every schedule."""

from __future__ import annotations

import pytest

from conftest import schedule, tiny_params
from sentiloop import pipeline, schedules
from sentiloop.errors import SettingsError
from sentiloop.settings import validate_composed
from sentiloop.settings._base import validate_section
from sentiloop.settings.loop import Schedule
from sentiloop.steps.judge import rule_for


def test_constant_and_linear_values():
    assert schedules.schedule_table(schedule("constant", 0.8, 0.5), 3) == [0.8, 0.8, 0.8]
    assert schedules.schedule_table(schedule("linear", 0.9, 0.7), 3) == pytest.approx([0.9, 0.8, 0.7])
    assert schedules.schedule_table(schedule("linear", 0.9, 0.7), 1) == [0.9]


def test_a_schedule_outside_its_iterations_is_an_error():
    with pytest.raises(schedules.ScheduleError, match="iteration 4 outside 1..3"):
        schedules.scheduled_value(schedule("linear", 0.9, 0.7), 4, 3)


def _settings(base_params, csv, sched):
    return validate_composed(tiny_params(base_params, csv, iterations=2, schedule=sched))


def test_linear_is_a_posterior_bar_and_curriculum_a_share_of_the_estimated_errors(base_params, tmp_path):
    csv = tmp_path / "x.csv"
    s = _settings(base_params, csv, {"name": "linear", "start": 0.9, "end": 0.8})
    r1, r2 = rule_for(s, 1, 0.3, 1000), rule_for(s, 2, 0.3, 1000)
    assert (r1.flip_at, r2.flip_at, r1.budget) == (0.9, pytest.approx(0.8), None)
    c = _settings(base_params, csv, {"name": "curriculum", "start": 0.5, "end": 1.0})
    r1, r2 = rule_for(c, 1, 0.3, 1000), rule_for(c, 2, 0.3, 1000)
    assert (r1.budget, r2.budget) == (150, 300)  # half, then all of 0.3 x 1000
    assert r1.flip_at == c.correction.flip_floor
    b = _settings(base_params, csv, {"name": "class_balanced", "start": 0.9, "end": 0.8, "max_drift": 0.01})
    assert rule_for(b, 1, 0.3, 1000).max_drift == 0.01


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"name": "cosine", "start": 0.9, "end": 0.8, "max_drift": 0.02},
            "schedule.name = 'cosine': must be one of 'constant', 'linear', 'curriculum', 'class_balanced'",
        ),
        ({"name": "linear", "start": 1.5, "end": 0.8, "max_drift": 0.02}, r"schedule.start = 1.5: must be in \(0, 1\]"),
        (
            {"name": "linear", "start": -0.5, "end": 0.8, "max_drift": 0.02},
            r"schedule.start = -0.5: must be in \(0, 1\]",
        ),
        ({"name": "curriculum", "start": 0.8, "end": 0.4, "max_drift": 0.02}, "a curriculum's share must not shrink"),
    ],
)
def test_bad_schedules_are_refused(bad, message):
    with pytest.raises(SettingsError, match=message):
        validate_section(Schedule, bad, prefix=("schedule",))


@pytest.mark.parametrize(
    "sched",
    [
        {"name": "constant", "start": 0.8, "end": 0.8},
        {"name": "linear", "start": 0.9, "end": 0.8},
        {"name": "curriculum", "start": 0.5, "end": 1.0},
        {"name": "class_balanced", "start": 0.9, "end": 0.8, "max_drift": 0.01},
    ],
)
def test_every_schedule_runs_the_loop_and_improves_labels(noisy_corpus, base_params, tmp_path, sched):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=2, schedule=sched)
    s = pipeline.run_loop(params, tmp_path / "run")
    first, last = s["iterations"][0], s["iterations"][-1]
    assert last["gold/label_accuracy"] > first["gold/label_accuracy"] + 0.1
    assert last["gold/correction_precision"] >= 0.85
