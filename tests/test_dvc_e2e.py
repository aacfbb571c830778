"""End to end through DVC itself, in a temporary copy of the repository, on a tiny corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, plant_flips, synthetic_corpus, tiny_data, write_csv

COPY = [
    "conf",
    "stages",
    "src",
    "hydra_plugins",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvcignore",
    "data/feedback",
]


def sh(args, cwd, **kw):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DVCLIVE_TEST"},
        "PYTHONPATH": str(Path(cwd) / "src"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        )
    return r.stdout


@pytest.fixture
def repo(tmp_path):
    dst = tmp_path / "repo"
    dst.mkdir()
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dst / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dst / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst / item)
    texts, gold = synthetic_corpus(600, seed=3)
    noisy, _ = plant_flips(gold, 0.3, seed=4)
    names = np.array(["negative", "positive"])
    write_csv(
        dst / "tiny.csv",
        [
            {"id": i, "text": t, "label": names[y], "gold": names[g]}
            for i, (t, y, g) in enumerate(zip(texts, noisy, gold))
        ],
    )
    (dst / "conf/data/tiny.yaml").write_text(yaml.safe_dump(tiny_data("tiny.csv", gold=True)))
    sh(["git", "init", "-q"], dst)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dst)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], dst)
    return dst


# the smallest config that still runs every stage: one member (the lexicon), two iterations
OVERRIDES = ["data=tiny", "ensemble.members=[lexicon]", "models/lexicon=blend", "models.lexicon.seed_lexicon=none"]


def test_dvc_repro_on_a_minimal_config(repo):
    py = sys.executable
    overrides = [*OVERRIDES, "loop.max_iterations=2", "schedule=linear", "schedule.start=0.66", "schedule.end=0.6"]
    sh([py, "-m", "sentiloop.config", *overrides], repo)
    out = sh([py, "-m", "dvc", "repro"], repo)
    assert "retrain@it2-lexicon" in out
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert summary["termination_reason"] in ("label_change_rate", "dictionary_change_rate", "plateau", "max_iterations")
    live = json.loads((repo / "metrics/live/metrics.json").read_text())
    assert "gold" in live and "ensemble" in live
    steps = (repo / "metrics/live/plots/metrics/label_change_rate.tsv").read_text().splitlines()
    assert steps[0] == "step\tlabel_change_rate" and len(steps) == 3
    # after the loop: a recorded gate verdict (never a failed stage), the bundle, the report
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert set(gate) >= {"passed", "deployable", "f1", "threshold", "attempts"}
    assert gate["f1"] == pytest.approx(summary["test_macro_f1"], abs=1e-6)
    manifest = json.loads((repo / "models/bundle/manifest.json").read_text())
    assert list(manifest["members"]) == ["lexicon"] and manifest["gate"]["deployable"] == gate["deployable"]
    assert "## Quality gate" in (repo / "metrics/report.md").read_text()
    assert len(list((repo / "metrics/report").glob("*.png"))) == 7
    assert "up to date" in sh([py, "-m", "dvc", "repro"], repo)

    dag = sh([py, "-m", "dvc", "dag"], repo)
    for stage in (
        "predict@it1",
        "relabel@it2",
        "correct@it2",
        "retrain@it2-lexicon",
        "publish",
        "summarize",
        "gate",
        "bundle",
        "report",
        "review_data",
    ):
        assert stage in dag
    overview = json.loads((repo / "data/review/overview.json").read_text())
    assert (
        overview["termination_reason"] == summary["termination_reason"]
        and (repo / "data/review/queue.parquet").exists()
    )


@pytest.mark.slow  # ~2-3 min on 2 cores: every stage of three iterations, run by .ci/run's second step
def test_dvc_exp_run_composes_params_and_runs_the_pipeline(repo):
    """`dvc exp run -S ...` recomposes params.yaml from conf/ (the resolvers unroll the loop again)
    and runs the pipeline: three iterations of the constant schedule instead of the workspace's two."""
    py = sys.executable
    sh([py, "-m", "sentiloop.config", *OVERRIDES, "loop.max_iterations=2"], repo)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], repo)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "params"], repo)
    sh(
        [
            py,
            "-m",
            "dvc",
            "exp",
            "run",
            "-n",
            "three",
            *[a for o in OVERRIDES for a in ("-S", o)],
            "-S",
            "loop.max_iterations=3",
            "-S",
            "schedule=constant",
            "-S",
            "schedule.start=0.62",
            "-S",
            "schedule.end=0.62",
        ],
        repo,
    )
    shown = json.loads(sh([py, "-m", "dvc", "exp", "show", "--json"], repo))
    text = json.dumps(shown)
    assert "three" in text and "termination_reason" in text
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["loop"]["max_iterations"] == 3 and list(params["iterations"]) == ["it1", "it2", "it3"]
    assert params["schedule"]["name"] == "constant" and params["ensemble"]["members"] == ["lexicon"]
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert summary["iterations_run"] >= 1
    assert (repo / "metrics/gate.json").exists() and (repo / "models/bundle/manifest.json").exists()
