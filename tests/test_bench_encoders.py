"""bench/encoders.py's parts on tiny synthetic Korean data (the real run needs NSMC): a fitted
member is reused only for the same member, config, seed and data; the report renders."""

from __future__ import annotations

import numpy as np

from sentiloop.benchmark.encoders import fit_and_score, render
from sentiloop.settings import member_config

POS = ["정말 재밌어요 최고", "감동적인 명작", "배우 연기 최고 추천", "또 보고 싶다 최고"]
NEG = ["시간 아깝다 최악", "지루하고 별로", "돈 아까운 최악 영화", "실망 지루하다"]
CFG = member_config("lexicon", strategy="blend", min_count=1, seed_lexicon="none", max_vocab=1000)


def _data(flip: bool = False):
    texts = POS + NEG
    y = np.array([1] * 4 + [0] * 4)
    if flip:
        y = 1 - y
    return (texts, y), (texts[::2], y[::2]), (texts[1::2], y[1::2])


def test_a_fitted_member_is_reused_only_for_the_same_data(tmp_path):
    train, dev, test = _data()
    rec, probs = fit_and_score("lexicon", CFG, train, dev, test, 0, tmp_path)
    assert not rec.get("reused") and rec["test_accuracy"] == 1.0
    again, probs2 = fit_and_score("lexicon", CFG, train, dev, test, 0, tmp_path)
    assert again["reused"] and np.allclose(probs2["test"], probs["test"])
    flipped = fit_and_score("lexicon", CFG, *_data(flip=True), 0, tmp_path)[0]
    assert not flipped.get("reused") and flipped["test_accuracy"] == 1.0
    other_seed = fit_and_score("lexicon", CFG, train, dev, test, 1, tmp_path)[0]
    assert not other_seed.get("reused")


def test_render_reports_members_ensemble_and_gain():
    spec = {
        "subset_seed": 13,
        "n_train": 20000,
        "dev_share": 0.1,
        "n_test": 5000,
        "model_seed": 42,
        "throughput_texts": 300,
    }
    results = {
        "spec": spec,
        "machine": "test",
        "started": "s",
        "finished": "f",
        "load_before": [1, 1, 1],
        "load_after": [1, 1, 1],
        "throughput": [
            {
                "encoder": "e5",
                "threads": 1,
                "sentences_per_s": 10.0,
                "sentences_per_cpu_s": 20.0,
                "load_before": [2.0, 2.0, 2.0],
            }
        ],
        "encoders": [{"encoder": "e5", "dev_accuracy": 0.8, "test_accuracy": 0.79, "encoded": 25000, "fit_s": 9.0}],
        "members": [
            {"member": "lexicon", "test_accuracy": 0.81, "dev_accuracy": 0.8},
            {"member": "bert", "encoder": "e5", "test_accuracy": 0.79, "dev_accuracy": 0.8, "reused": True},
        ],
        "ensemble": {
            "seed weights": {"weights": {"lexicon": 0.33, "bert": 0.67}, "test_accuracy": 0.82, "dev_accuracy": 0.81},
            "fitted weights (default)": {
                "weights": {"lexicon": 0.6, "bert": 0.4},
                "test_accuracy": 0.835,
                "dev_accuracy": 0.82,
            },
        },
        "weighting": {"zeroed": {}},
        "best_member": {"member": "lexicon", "test_accuracy": 0.81},
    }
    md = render(results, "python bench/encoders.py")
    assert "| ensemble, fitted weights (default) | **0.8350** |" in md
    assert "+2.50 points" in md and "bert (`e5`) ‡" in md and "‡ fitted by an earlier run" in md
