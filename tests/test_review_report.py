"""`sentiloop review-report`: two committed runs (tiny lexicon config, the real stages in-process)
in a temporary git + DVC repository, reviewed against each other and against the workspace."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, plant_flips, synthetic_corpus, tiny_data, write_csv

COPY = ["conf", "stages", "src", "hydra_plugins", "dvc.yaml", ".dvc/config", ".dvcignore", "data/feedback"]
TINY = [
    "data=tiny",
    "loop.max_iterations=2",
    "ensemble.members=[lexicon]",
    "models.lexicon.seed_lexicon=none",
    "gate.max_attempts=1",
    "gate.f1_threshold=0.7",
]


def sh(args, cwd):
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def _run(repo: Path, overrides: list[str]) -> None:
    """Compose params.yaml as `make params` does, then every stage of the pipeline in-process."""
    from sentiloop import pipeline
    from sentiloop.settings import load

    sh([sys.executable, "-m", "sentiloop.config", *overrides], repo)
    s = load(repo / "params.yaml")
    import os

    cwd = os.getcwd()
    os.chdir(repo)  # data.path and feedback.dir are relative to the repository
    try:
        pipeline.run_loop(s, Path("."), until="report")
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    repo = tmp_path_factory.mktemp("review") / "repo"
    repo.mkdir()
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (repo / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, repo / item)
    texts, gold = synthetic_corpus(500, seed=3)
    noisy, _ = plant_flips(gold, 0.25, seed=4)
    names = np.array(["negative", "positive"])
    write_csv(
        repo / "tiny.csv",
        [
            {"id": i, "text": t, "label": names[y], "gold": names[g]}
            for i, (t, y, g) in enumerate(zip(texts, noisy, gold))
        ],
    )
    (repo / "conf/data/tiny.yaml").write_text(yaml.safe_dump(tiny_data("tiny.csv", gold=True)))
    (repo / ".gitignore").write_text(
        "/data/*.sqlite\n/data/it*/\n/data/final/\n/data/rejects.csv\n/models/\n/.sentiloop/\n"
    )
    sh(["git", "init", "-q"], repo)
    sh(["git", "config", "user.email", "t@t"], repo)
    sh(["git", "config", "user.name", "t"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "setup"], repo)
    _run(repo, [*TINY, "schedule=constant", "schedule.start=0.7", "schedule.end=0.7"])
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "run 1: constant"], repo)
    _run(repo, [*TINY, "schedule=curriculum"])
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "run 2: curriculum"], repo)
    return repo


def test_review_of_two_committed_runs(two_runs):
    from sentiloop.cli import main
    from sentiloop.report import is_png

    repo = two_runs
    assert main(["review-report", "--repo", str(repo), "--base", "HEAD~1", "--target", "HEAD"]) == 0
    md = (repo / "reports/review.md").read_text()
    # dvc params diff: the schedule changed
    params = md.split("## Parameters")[1].split("## Metrics")[0]
    assert re.search(r"\| params\.yaml\s*\| schedule\.name\s*\| constant\s*\| curriculum", params)
    # dvc metrics diff: a Markdown table with the runs' metrics
    metrics = md.split("## Metrics")[1].split("## Figures")[0]
    assert "| Path" in metrics and "metrics/summary.json" in metrics
    # both gate verdicts, each with its own numbers
    import json

    gates = [json.loads(sh(["git", "show", f"{rev}:metrics/gate.json"], repo)) for rev in ("HEAD~1", "HEAD")]
    section = md.split("## Quality gate")[1].split("## Parameters")[0]
    for g in gates:
        assert f"test macro-F1 {g['f1']} vs threshold 0.7" in section
    # figures side by side, as PNGs next to the Markdown
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == ["review/confusion.png", "review/convergence.png", "review/members.png"]
    for rel in linked:
        assert is_png(repo / "reports" / rel)
    # label changes by source: the committed per-iteration records, summed
    totals = []
    for rev in ("HEAD~1", "HEAD"):
        n = 0
        for k in (1, 2):
            rec = json.loads(sh(["git", "show", f"{rev}:metrics/iterations/it{k}.json"], repo))
            n += sum(rec.get("corrections_by_source", {}).values())
        totals.append(n)
    assert f"| total | {totals[0]} | {totals[1]} | {totals[1] - totals[0]} |" in md


def test_review_against_the_workspace_and_bad_revisions(two_runs, capsys):
    from sentiloop.cli import main
    from sentiloop.review_report import write

    repo = two_runs
    out = write(repo, "HEAD", output=repo / "reports/ws.md")
    md = out["output"].read_text()
    assert "_no params changed_" in md and "vs HEAD (" in md
    assert [s.label for s in out["sides"]][1] == "workspace"
    assert out["sides"][1].confusion.sum() == out["sides"][0].confusion.sum() > 0
    assert main(["review-report", "--repo", str(repo), "--base", "no-such-rev"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'no-such-rev' is neither a git revision nor a DVC experiment" in err
