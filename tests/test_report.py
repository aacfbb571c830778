"""The report: real loop outputs in, Markdown + valid PNGs out."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ops_support as S
from sentiloop.layout import Layout
from sentiloop.report import PNG_SIGNATURE, ReportData, collect, is_png, write_report
from sentiloop.steps import gate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    rows = S.corpus(30)
    for r in rows[:9]:  # some noisy train labels for the loop to repair
        if r["split"] == "train":
            r["label"] = r["current_label"] = S.CLASSES[(S.CLASSES.index(r["label"]) + 1) % 3]
    prm = S.params(loop={"max_iterations": 2})
    S.run_loop(root, rows, prm)
    gate.run(prm, Layout(root))
    return root, prm


def _check_png(path):
    import matplotlib.image as mpimg
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE and is_png(path)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert mpimg.imread(path).ndim == 3


def test_report_from_a_real_run(run):
    root, prm = run
    data = collect(prm, Layout(root))
    figures = write_report(data, root / "metrics/report.md")
    assert set(figures) == {
        "convergence",
        "accuracy",
        "confusion",
        "transitions",
        "distribution",
        "lexicon",
        "token_lengths",
    }
    for path in figures.values():
        _check_png(path)
    md = (root / "metrics/report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == sorted(p.relative_to(root / "metrics").as_posix() for p in figures.values())
    for rel in linked:
        assert (root / "metrics" / rel).exists()
    # the numbers behind the figures are in the Markdown, and they are the run's numbers
    assert data.transitions.sum() == sum(1 for r in S.corpus(30) if r["split"] == "train")
    assert f"{int(data.transitions.sum() - np.trace(data.transitions))} of {int(data.transitions.sum())}" in md
    assert set(data.accuracy) == {"ensemble", "lexicon"} and set(data.accuracy["ensemble"]) == {0, 1, 2}
    assert data.confusion["ensemble"].sum() == sum(1 for r in S.corpus(30) if r["split"] == "test")
    assert sorted(data.distribution) == [0, 1, 2]
    assert set(data.lexicon_words) == set(S.CLASSES) and len(data.lexicon_words["positive"]) == 5
    assert "## Quality gate" in md and ("PASSED" in md or "FAILED" in md)
    assert "| train |" in md  # token-length statistics table
    # iteration 0 vs the final models, from the run's own eval files
    ev0, ev2 = S.read_json(root / "metrics/eval/it0.json"), S.read_json(root / "metrics/eval/it2.json")
    assert data.cleaning["test"] == {
        "it0": ev0["ensemble"]["test"]["macro_f1"],
        "final": ev2["ensemble"]["test"]["macro_f1"],
    }
    assert "## Did cleaning help?" in md


def test_compared_runs_are_drawn_and_missing_ones_noted(run, tmp_path):
    import shutil

    root, prm = run
    bare = Layout(tmp_path / "bare")  # a run without test predictions or models
    shutil.copytree(root / "metrics", bare.metrics)
    bare.final_dir.mkdir(parents=True)
    shutil.copy(root / "data/final/sentences.sqlite", bare.final_store)
    s = prm.merged({"report": {"compare": {"same run again": str(root / "metrics"), "gone": str(tmp_path / "nope")}}})
    data = collect(s, bare)
    assert set(data.convergence) == {"constant (this run)", "same run again"}
    assert any("gone" in n for n in data.notes)
    figures = write_report(data, tmp_path / "report.md")
    assert "confusion" not in figures and "lexicon" not in figures
    md = (tmp_path / "report.md").read_text()
    assert "_no test predictions found_" in md and "_no lexicon member in this run_" in md
    _check_png(figures["convergence"])


def test_empty_report_data_draws_nothing_empty(tmp_path):
    figures = write_report(ReportData(classes=S.CLASSES), tmp_path / "r.md")
    assert figures == {}
    assert not list(tmp_path.rglob("*.png"))
    assert "_no per-iteration metrics found_" in (tmp_path / "r.md").read_text()


def test_experiments_are_read_from_their_git_commits(run, tmp_path):
    """`sentiloop report --experiments`: each DVC experiment ref's committed per-iteration JSONs."""
    import shutil
    import subprocess

    from sentiloop.report import convergence_from_metrics, convergence_from_rev, experiment_revs

    root, prm = run
    repo = tmp_path / "repo"
    shutil.copytree(root / "metrics", repo / "metrics")

    def git(*a):
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *a],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (repo / "params.yaml").write_text("schedule: {name: curriculum}\n")
    git("add", "-A")
    git("commit", "-qm", "exp")
    sha = git("rev-parse", "HEAD")
    git("update-ref", f"refs/exps/{sha[:2]}/{sha[2:]}/bushy-fern", sha)
    git("update-ref", "refs/exps/exec/EXEC_BASELINE", sha)  # a running experiment: ignored
    assert experiment_revs(repo) == {"bushy-fern (curriculum)": sha}
    assert convergence_from_rev(repo, sha) == convergence_from_metrics(root / "metrics")
    assert set(convergence_from_rev(repo, sha)) >= {"label_change_rate", "dev_macro_f1"}


def test_the_report_says_when_cleaning_did_not_improve_over_iteration_0(tmp_path):
    from sentiloop.report import cleaning_section, cleaning_verdict, gate_sentence

    worse = {"dev": {"it0": 0.71, "final": 0.74}, "test": {"it0": 0.739, "final": 0.739}}
    assert cleaning_verdict(worse) == ["test"]
    text = cleaning_section(worse)
    assert text.startswith("**Cleaning did not improve test macro-F1 over iteration 0**")
    better = {"dev": {"it0": 0.71, "final": 0.74}, "test": {"it0": 0.70, "final": 0.72}}
    assert cleaning_verdict(better) == [] and "did not" not in cleaning_section(better)
    data = ReportData(
        classes=S.CLASSES, cleaning={"dev": {"it0": 0.8, "final": 0.7}, "test": {"it0": 0.8, "final": 0.7}}
    )
    write_report(data, tmp_path / "r.md")
    assert "Cleaning did not improve dev or test macro-F1" in (tmp_path / "r.md").read_text()
    g = {"passed": True, "f1": 0.76, "threshold": 0.75, "attempts": 2, "selected_attempt": 2, "dev_f1": 0.74}
    assert "compared on dev macro-F1 only (0.74 for retraining attempt 2, the best of 3)" in gate_sentence(
        {**g, "selected_on": "dev"}
    )
    assert "Retraining attempt 2 was chosen on its test score" in gate_sentence(g)  # an older gate.json
