"""All four members through the lead's loop (pipeline.run_loop = what `dvc repro` runs), with
out-of-fold prediction and fitted ensemble weights, on a tiny corpus."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import FILLER, NEG, POS, plant_flips, synthetic_corpus, tiny_params, write_csv
from neural_corpus import make_tiny_bert
from sentiloop import pipeline

MEMBERS = ["lexicon", "lstm", "bilstm", "bert"]


@pytest.fixture
def run(base_params, tmp_path):
    texts, gold = synthetic_corpus(400, seed=5)
    noisy, _ = plant_flips(gold, 0.2, seed=6)
    names = np.array(["negative", "positive"])
    csv_path = write_csv(
        tmp_path / "c.csv",
        [
            {"id": f"s{i}", "text": t, "label": names[y], "gold": names[g]}
            for i, (t, y, g) in enumerate(zip(texts, noisy, gold))
        ],
    )
    # every member cross-fitted (the default folds only the cheap ones); the guard off so each
    # member's own strategy is what iteration 1 keeps
    p = tiny_params(
        base_params, csv_path, iterations=1, members=MEMBERS, cross_fit=2, cross_fit_members=MEMBERS, guard=False
    )
    small = {"threads": 1, "epochs": 2, "batch_size": 64, "min_count": 1, "max_len": 16}
    p["models"]["lstm"] = {**p["models"]["lstm"], **small, "embedding_dim": 16, "units": 16}
    p["models"]["bilstm"] = {**p["models"]["bilstm"], **small, "embedding_dim": 16, "hidden_size": 16, "dense_size": 16}
    bert_dir = make_tiny_bert(tmp_path / "bert", FILLER + POS + NEG)
    p["models"]["bert"] = {
        **p["models"]["bert"],
        "pretrained": bert_dir,
        "threads": 1,
        "max_length": 16,
        "feature_cache": str(tmp_path / "feats"),
        "head_batch_size": 32,
    }
    p["ensemble"]["fit_weights"] = True
    summary = pipeline.run_loop(p, tmp_path / "run")
    return tmp_path / "run", summary


def test_four_members_with_cross_fitting_and_fitted_weights(run):
    w, summary = run
    assert summary["iterations"]
    cols = pq.read_schema(w / "data/it1/predictions.parquet").names
    for m in MEMBERS:
        assert f"p_{m}_positive" in cols
        assert (w / f"models/it0/{m}/folds/f1/model.json").exists()
        assert not (w / f"models/it1/{m}/folds").exists()  # the last models judge nobody
    ev = json.loads((w / "metrics/eval/it0.json").read_text())
    weights = ev["ensemble"]["weights"]
    assert set(weights) == set(MEMBERS) and sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(ev["members"][m]["contribution"] is not None for m in MEMBERS)
    assert ev["ensemble"]["dev"]["macro_f1"] > 0.6
    strategies = {m: json.loads((w / f"models/it1/{m}/model.json").read_text())["strategy_"] for m in MEMBERS}
    assert strategies == {"lexicon": "blend", "lstm": "finetune", "bilstm": "finetune", "bert": "head"}
