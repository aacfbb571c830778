"""The quality benchmark, tiny: real NSMC rows, the lexicon member, every arm, every column.

Needs NSMC beside the repository (../shared/data/nsmc, as in CI); skipped with the reason
otherwise. Arms run in this process for speed (one arm is also run in a subprocess, the way
`make bench` runs them all, to check the isolation and the memory figure).
"""

import json

import pytest

from sentiloop.benchmark.data import SubsetSpec, find_nsmc
from sentiloop.benchmark.quality import SCHEDULES, QualityRun, run_quality, write_report
from sentiloop.benchmark.report import COLUMNS
from sentiloop.benchmark.runner import ARMS_DIR, run_arm

NSMC = find_nsmc()
pytestmark = pytest.mark.skipif(
    NSMC is None,
    reason="NSMC not found at ../shared/data/nsmc/nsmc_reviews.tsv.gz (set SENTILOOP_NSMC to run the tiny benchmark)",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    run = QualityRun(
        subset=SubsetSpec(n_train=2000, n_test=500, seed=3, noise_seed=4, pool_rows=100_000),
        members=("lexicon",),
        schedules=SCHEDULES,
        variants={},
        cleanlab_folds=3,
        workdir=str(workdir),
        isolate=False,
    )
    return run_quality(run, log=lambda *_: None), workdir


def test_every_arm_produces_every_column(tiny):
    summary, _ = tiny
    arms = [r["arm"] for r in summary["rows"]]
    assert arms == [
        "none",
        "cleanlab_relabel",
        "cleanlab_prune",
        *[f"sentiloop:{s}" for s in SCHEDULES],
        "oracle",
        "ceiling",
    ]
    for row in summary["rows"]:
        for key, _ in COLUMNS:
            assert key in row, (row["arm"], key)
        for key in ("label_accuracy", "test_accuracy", "test_macro_f1", "wall_s", "peak_rss_mb"):
            assert row[key] is not None and row[key] > 0, (row["arm"], key)
    by = {r["arm"]: r for r in summary["rows"]}
    assert by["none"]["label_accuracy"] == pytest.approx(0.7)
    assert by["ceiling"]["label_accuracy"] == 1.0
    assert by["cleanlab_relabel"]["n_corrections"] > 0


def test_the_bayes_oracle_bounds_what_relabelling_can_reach(tiny):
    """The oracle sees gold-trained evidence and the true noise: it repairs labels (more right
    than wrong changes) and no noisy-label arm relabels more accurately (up to sampling noise)."""
    summary, _ = tiny
    by = {r["arm"]: r for r in summary["rows"]}
    oracle = by["oracle"]
    assert oracle["label_accuracy"] > by["none"]["label_accuracy"] + 0.05
    assert oracle["correction_precision"] > 0.5
    for arm in ("cleanlab_relabel", *[f"sentiloop:{s}" for s in SCHEDULES]):
        assert by[arm]["label_accuracy"] <= oracle["label_accuracy"] + 0.01, arm


def test_rerunning_an_arm_replaces_only_its_row(tiny, tmp_path):
    import shutil

    from sentiloop.benchmark.suite import rerun_arms

    summary, workdir = tiny
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    before = {r["arm"]: r for r in json.loads((copy / "results.json").read_text())["rows"]}
    rerun_arms(copy, ["oracle"], log=lambda *_: None)
    after = json.loads((copy / "results.json").read_text())
    assert [r["arm"] for r in after["rows"]] == [r["arm"] for r in summary["rows"]]
    rows = {r["arm"]: r for r in after["rows"]}
    assert rows["oracle"]["label_accuracy"] == before["oracle"]["label_accuracy"]  # same data, same seeds
    assert rows["cleanlab_prune"] == before["cleanlab_prune"]
    assert after["reruns"][-1]["arms"] == ["oracle"]
    with pytest.raises(ValueError, match="cannot rerun"):
        rerun_arms(copy, ["cleanlab_relabel"])


def test_the_loop_beats_no_correction_on_label_accuracy(tiny):
    summary, _ = tiny
    by = {r["arm"]: r for r in summary["rows"]}
    base = by["none"]["label_accuracy"]
    for s in SCHEDULES:
        row = by[f"sentiloop:{s}"]
        assert row["n_corrections"] > 0, s
        assert row["correction_precision"] > 0.5, s  # more right than wrong changes
        assert row["label_accuracy"] > base, (s, row["label_accuracy"], base)
        trace = row["trace"]
        assert [t["iteration"] for t in trace] == list(range(len(trace)))
        assert trace[0]["label_accuracy"] == pytest.approx(base)
        assert trace[-1]["label_accuracy"] == pytest.approx(row["label_accuracy"])


def test_report_writes_table_and_plot(tiny, tmp_path):
    summary, _ = tiny
    doc, plot = tmp_path / "benchmarks.md", tmp_path / "img" / "q.png"
    write_report(summary, doc=doc, plot=plot, command="python bench/quality.py --train 2000")
    text = doc.read_text()
    assert "python bench/quality.py --train 2000" in text
    assert "| no correction |" in text and "(img/q.png)" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_an_arm_in_its_own_subprocess_reports_its_own_memory(tiny):
    _, workdir = tiny
    result = run_arm(workdir, "none", timeout=120)
    assert result["peak_rss_mb"] > 50
    assert result["wall_s"] > 0
    saved = json.loads((workdir / ARMS_DIR / "none.json").read_text())
    assert saved["label_accuracy"] == pytest.approx(0.7)
