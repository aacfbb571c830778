"""What `dvc status` and `dvc exp run` do with this dvc.yaml, in a temporary copy of the repository.

dvc.lock is written by `dvc commit` over placeholder outputs (no stage runs: what is checked is
which stages DVC considers changed, not what they compute), then:
  - editing a member's predict code marks the stages that run it, and no others;
  - shrinking the corpus file (data=file) marks ingest: the input data is a dependency;
  - a bad parameter stops `dvc exp run` while params are composed, before any stage runs.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import yaml

import dag_support as D
from conftest import ROOT, plant_flips, synthetic_corpus, tiny_data, write_csv
from test_dvc_e2e import COPY, sh

OVERRIDES = ["data=tiny", "loop.max_iterations=2", "ensemble.members=[lexicon]"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    import sys

    dst = tmp_path_factory.mktemp("dag") / "repo"
    dst.mkdir()
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, dst / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dst / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst / item)
    texts, gold = synthetic_corpus(300, seed=3)
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
    py = sys.executable
    sh([py, "-m", "sentiloop.config", *OVERRIDES], dst)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for st in D.dvc_stages(params).values():  # placeholder outputs: nothing runs
        for out in st["outs"]:
            p = dst / out
            if p.suffix:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text("placeholder\n")
            else:
                p.mkdir(parents=True, exist_ok=True)
                (p / "placeholder").write_text("placeholder\n")
    sh(["git", "init", "-q"], dst)
    # twice: committing an output writes the .gitignore beside it, inside a directory that a
    # later stage depends on (models/it1), so the first pass hashed that directory without it
    sh([py, "-m", "dvc", "commit", "-f", "-q"], dst)
    sh([py, "-m", "dvc", "commit", "-f", "-q"], dst)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dst)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], dst)
    assert _changed(dst) == set()
    return dst


def _changed(repo) -> set[str]:
    import sys

    out = sh([sys.executable, "-m", "dvc", "status"], repo)
    return {m.group(1) for m in re.finditer(r"^(\S+):\s*$", out, flags=re.M)}


def test_editing_a_members_predict_code_reruns_the_stages_that_run_it(repo):
    lexicon = repo / "src/sentiloop/models/lexicon.py"
    original = lexicon.read_text()
    try:
        lexicon.write_text(
            original.replace(
                "    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:",
                "    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:  # edited",
                1,
            )
        )
        assert lexicon.read_text() != original
        changed = _changed(repo)
    finally:
        lexicon.write_text(original)
    runs_lexicon = {
        "train@lexicon",
        "retrain@it1-lexicon",
        "retrain@it2-lexicon",
        "predict@it1",
        "predict@it2",
        "predict_final",
        "gate",
        "bundle",
        "report",
        "review_data",
    }
    assert changed == runs_lexicon


def test_a_smaller_corpus_file_reruns_ingest(repo):
    corpus = repo / "tiny.csv"
    original = corpus.read_bytes()
    try:
        corpus.write_bytes(b"".join(original.splitlines(keepends=True)[:201]))  # 300 -> 200 rows
        assert _changed(repo) == {"ingest"}
    finally:
        corpus.write_bytes(original)
    assert _changed(repo) == set()


def test_a_bad_parameter_stops_dvc_exp_run_before_any_stage(repo):
    import subprocess
    import sys

    before = (repo / "params.yaml").read_text()
    r = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "correction.aside_at=-0.05"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "params.yaml: correction.aside_at = -0.05: must be in (0, 1]" in out
    assert "Running stage" not in out and (repo / "params.yaml").read_text() == before
    assert (repo / "data/ingested.sqlite").read_text() == "placeholder\n"
