"""`dvc repro` with llm=simulated in a temporary copy of the repository: the relabel stage asks
the simulated annotator, correct applies its answers (source llm), analyze writes the bias
report, and the usage reaches dvclive."""

from __future__ import annotations

import json
import sqlite3
import sys

import pandas as pd
import pytest

from test_dvc_e2e import repo, sh  # noqa: F401  (the temporary repository fixture)


@pytest.mark.slow  # ~90 s: a full `dvc repro` of two iterations, run by `make test-all`
def test_dvc_repro_with_the_simulated_annotator(repo):  # noqa: F811
    py = sys.executable
    sh(
        [
            py,
            "-m",
            "sentiloop.config",
            "data=tiny",
            "loop.max_iterations=2",
            "schedule=linear",
            "schedule.start=0.66",
            "schedule.end=0.6",
            "ensemble.members=[lexicon]",
            "models.lexicon.seed_lexicon=none",
            "llm=simulated",
            "llm.budget.max_rows=60",
            "llm.batch_size=16",
            "analysis.max_drift=0.05",
        ],
        repo,
    )
    out = sh([py, "-m", "dvc", "repro"], repo)
    assert "analyze@it2" in out
    usage = json.loads((repo / "metrics/llm/it1.json").read_text())
    assert usage["provider"] == "simulated" and usage["simulated"] == 1 and usage["llm_used"] == 1
    assert 0 < usage["rows_answered"] <= 60 and usage["requests"] == -(-usage["rows_answered"] // 16)
    rel = pd.read_parquet(repo / "data/it1/relabel.parquet")
    assert set(rel["status"]) <= {"answered", "over_budget"} and rel["simulated"].all()
    con = sqlite3.connect(repo / "data/it2/sentences.sqlite")
    llm_changes = con.execute("SELECT COUNT(*), MIN(detail) FROM label_history WHERE source = 'llm'").fetchone()
    con.close()
    assert llm_changes[0] > 0 and "simulated" in llm_changes[1]
    md = (repo / "metrics/analysis/it1.md").read_text()
    assert "# Bias report, iteration 1" in md and "SIMULATED annotator" in md
    assert "No LLM review: the simulated annotator cannot write reviews" in md or "llm.review.enabled is false" in md
    report = json.loads((repo / "metrics/analysis/it2.json").read_text())
    it2 = json.loads((repo / "metrics/iterations/it2.json").read_text())
    # the annotator's confident answers settle their rows: the rule no longer judges them
    it1 = json.loads((repo / "metrics/iterations/it1.json").read_text())
    assert it1["settled_by_llm"] > 0 and it1["corrections_by_source"].get("llm", 0) > 0
    judged = pd.read_parquet(repo / "data/it2/judgement.parquet")
    settled = set(rel[rel["status"] == "answered"]["id"].astype(str))
    assert not settled & set(judged["id"]) and "estimated_noise_rate" in it2
    assert report["llm_usage"]["provider"] == "simulated"
    live = (repo / "metrics/live/plots/metrics/llm/rows_answered.tsv").read_text().splitlines()
    assert live[0] == "step\trows_answered" and len(live) >= 3  # logged at it1, it2
    assert "up to date" in sh([py, "-m", "dvc", "repro"], repo)
