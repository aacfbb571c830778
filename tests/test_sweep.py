"""`make sweep`: one queued experiment per combination, named after what it varies."""

from __future__ import annotations

import pytest

from sentiloop.sweep import SweepError, command, main, plan, split_choices


def test_each_experiment_is_named_after_what_it_varies():
    runs = plan(["schedule=constant,linear,curriculum,class_balanced"], ["ensemble.members=[lexicon]"])
    assert [n for n, _ in runs] == [
        "schedule-constant",
        "schedule-linear",
        "schedule-curriculum",
        "schedule-class_balanced",
    ]
    assert runs[0][1] == ["ensemble.members=[lexicon]", "schedule=constant"]
    assert command(*runs[0]) == [
        "dvc",
        "exp",
        "run",
        "--queue",
        "-n",
        "schedule-constant",
        "-S",
        "ensemble.members=[lexicon]",
        "-S",
        "schedule=constant",
    ]


def test_a_grid_names_only_the_varied_keys_and_brackets_keep_their_commas():
    runs = plan(["schedule=linear", "loop.max_iterations=3,5", "ensemble.members=[lexicon],[lexicon,bert]"])
    names = [n for n, _ in runs]
    assert names == [
        "max_iterations-3_members-lexicon",
        "max_iterations-3_members-lexicon-bert",
        "max_iterations-5_members-lexicon",
        "max_iterations-5_members-lexicon-bert",
    ]
    assert runs[1][1] == ["schedule=linear", "loop.max_iterations=3", "ensemble.members=[lexicon,bert]"]
    assert split_choices("a,[b,c],{d: 1, e: 2}") == ["a", "[b,c]", "{d: 1, e: 2}"]
    # a single value varies nothing: it still names the run
    assert plan(["schedule=curriculum"])[0][0] == "schedule-curriculum"
    # a generic last part names nothing alone
    assert [n for n, _ in plan(["schedule.name=constant,linear"])] == ["schedule-constant", "schedule-linear"]
    assert plan(["models/bert=head,finetune"])[0][0] == "bert-head"


@pytest.mark.parametrize(
    "axes, message",
    [
        (["schedule"], "expected key=value"),
        (["schedule=a,,b"], "an empty choice"),
        (["m=[a,b"], "unbalanced brackets"),
        (["schedule=a", "schedule=b"], "swept twice"),
    ],
)
def test_bad_sweeps_are_one_line_errors(axes, message):
    with pytest.raises(SweepError, match=message):
        plan(axes)


def test_dry_run_prints_the_commands(capsys):
    assert main(["schedule=constant,linear", "--set", "gate.max_attempts=0", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "dvc exp run --queue -n schedule-constant -S gate.max_attempts=0 -S schedule=constant",
        "dvc exp run --queue -n schedule-linear -S gate.max_attempts=0 -S schedule=linear",
    ]
    with pytest.raises(SystemExit) as e:
        main(["schedule"])
    assert e.value.code == 2
