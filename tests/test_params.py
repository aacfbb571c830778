"""params.yaml is what conf/ composes to, so `dvc repro` and `dvc exp run` agree."""

from __future__ import annotations

import yaml

from conftest import ROOT
from sentiloop.config import compose


def test_committed_params_match_a_fresh_composition(tmp_path):
    out = compose(ROOT, [], tmp_path / "params.yaml")
    fresh = yaml.safe_load(out.read_text())
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert fresh == committed, "params.yaml is stale: run `make params` and commit it"


def test_iteration_chain_follows_max_iterations(tmp_path):
    p = yaml.safe_load(compose(ROOT, ["loop.max_iterations=4", "schedule=linear"], tmp_path / "p.yaml").read_text())
    assert [v["prev"] for v in p["iterations"].values()] == ["it0", "it1", "it2", "it3"]
    assert p["iterations"]["it4"] == {"k": 4, "prev": "it3"}
    assert set(p["retrain_items"]) == {f"it{k}-{m}" for k in range(1, 5) for m in p["ensemble"]["members"]}
