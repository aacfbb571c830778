"""DVC's own views: the curated plot tables the summarize and report stages write, no all-zero
LLM counters with llm=none, three plots from `dvc plots show` (one line per series), rendered
offline to PNG and self-contained HTML."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

import ops_support as S
from conftest import ROOT
from sentiloop.layout import Layout
from sentiloop.report import is_png
from sentiloop.steps import report, summarize


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    rows = S.corpus(30)
    for r in rows[:9]:
        if r["split"] == "train":
            r["label"] = r["current_label"] = S.CLASSES[(S.CLASSES.index(r["label"]) + 1) % 3]
    prm = S.params(loop={"max_iterations": 2})
    S.run_loop(root, rows, prm)
    steps = summarize.run(prm, Layout(root))
    report.run(prm, Layout(root))
    return root, prm, steps


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_no_llm_counters_with_llm_none_and_the_plot_tables(run):
    root, prm, steps = run
    assert prm.llm.provider == "none"
    live = json.loads((root / "metrics/live/metrics.json").read_text())
    assert "llm" not in live and "llm" not in live["corrections"]
    assert not (root / "metrics/live/plots/metrics/llm").exists()
    assert set(live["corrections"]) == {"ensemble", "human"}
    conv = _rows(root / "metrics/plots/convergence.csv")
    assert [r["iteration"] for r in conv] == ["0", "1", "2"]
    assert list(conv[0]) == [
        "iteration",
        "ensemble_dev_macro_f1",
        "ensemble_test_macro_f1",
        "label_change_rate",
        "lexicon_dict_change_rate",
    ]
    for k, r in enumerate(conv):
        ev = S.read_json(root / f"metrics/eval/it{k}.json")["ensemble"]
        assert float(r["ensemble_test_macro_f1"]) == pytest.approx(ev["test"]["macro_f1"], abs=1e-6)
    assert conv[0]["label_change_rate"] == ""  # nothing is corrected at iteration 0
    it1 = S.read_json(root / "metrics/iterations/it1.json")
    assert float(conv[1]["label_change_rate"]) == pytest.approx(it1["label_change_rate"], abs=1e-6)
    members = _rows(root / "metrics/plots/members.csv")
    assert list(members[0]) == ["iteration", "lexicon", "ensemble"]
    assert float(members[2]["lexicon"]) == pytest.approx(
        S.read_json(root / "metrics/eval/it2.json")["members"]["lexicon"]["test"]["accuracy"], abs=1e-6
    )
    confusion = _rows(root / "metrics/plots/confusion.csv")
    assert len(confusion) == sum(r["split"] == "test" for r in S.corpus(30))
    assert {r["actual"] for r in confusion} <= set(S.CLASSES) and {r["predicted"] for r in confusion} <= set(S.CLASSES)


def test_dvc_plots_show_three_curated_plots_rendered_offline(run, tmp_path, monkeypatch):
    from sentiloop.plots import dvc_specs, render

    root, prm, _ = run
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(root / "metrics/plots", repo / "metrics/plots")
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ensemble"]["members"] = ["lexicon"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([S.tool("dvc"), "init", "-q"], cwd=repo, check=True)
    specs = dvc_specs(cwd=repo)
    assert sorted(specs) == ["confusion", "convergence", "member_accuracy"]
    conv = specs["convergence"][0]
    fields = {v["field"] for v in conv["data"]["values"]}
    assert fields == {"ensemble_dev_macro_f1", "ensemble_test_macro_f1", "label_change_rate"}
    values = specs["member_accuracy"][0]["data"]["values"]
    assert [v["lexicon"] for v in values] == [r["lexicon"] for r in _rows(root / "metrics/plots/members.csv")]
    assert "lexicon" in json.dumps(specs["member_accuracy"][0]["encoding"]) or "lexicon" in json.dumps(
        specs["member_accuracy"][0].get("layer", "")
    )
    pngs = render(specs, tmp_path / "out")
    assert sorted(p.name for p in pngs) == ["confusion.png", "convergence.png", "member_accuracy.png"]
    for p in pngs:
        assert is_png(p)
        page = p.with_suffix(".html").read_text()
        assert "<script" in page and "cdn." not in page and 'src="http' not in page  # Vega inlined
    index = (tmp_path / "out/index.html").read_text()
    assert index.count("<img") == 3 and "http" not in index
