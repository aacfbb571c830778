"""Ensemble weights that follow the evidence: the rules of weights.choose_weights, and the
predict stage using them (fitted by default, majority-baseline members zeroed with the reason in
the eval json, out-of-fold train rows as evidence when cross-fitting)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ops_support as S
from sentiloop import ensemble
from sentiloop.models import base
from sentiloop.models.base import SentimentModel
from sentiloop.weights import choose_weights, evidence_source

SEED = {"good": 0.2, "fair": 0.3, "flat": 0.5}


def _probs(y, acc, rng, k=2, sharp=0.8):
    """Probabilities whose argmax equals y on a share `acc` of the rows."""
    right = rng.random(len(y)) < acc
    pred = np.where(right, y, (y + 1) % k)
    p = np.full((len(y), k), (1 - sharp) / (k - 1))
    p[np.arange(len(y)), pred] = sharp
    return p


@pytest.fixture
def evidence():
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.7).astype(np.int64)  # 70% class 1: the majority baseline is 0.7
    flat = np.tile([0.3, 0.7], (len(y), 1))  # always the majority class: accuracy 0.7
    return y, {"good": _probs(y, 0.92, rng), "fair": _probs(y, 0.8, rng), "flat": flat}


def test_a_member_at_the_majority_baseline_gets_weight_zero_and_a_reason(evidence):
    y, probs = evidence
    d = choose_weights(probs, y, SEED, evidence="dev")
    assert d.method == "fitted" and d.evidence == "dev" and d.n_rows == 600
    assert d.majority_accuracy == pytest.approx(0.7, abs=0.03)
    assert d.weights["flat"] == 0.0
    assert set(d.zeroed) == {"flat"} and "majority-class baseline" in d.zeroed["flat"]
    assert sum(d.weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert d.weights["good"] > d.weights["fair"] > 0  # the better member earns more weight
    assert d.log_loss["fitted"] <= d.log_loss["seed"]
    json.dumps(d.to_dict())  # the eval json records all of it


def test_fitted_weights_start_from_the_seed_and_lower_the_log_loss(evidence):
    y, probs = evidence
    two = {m: probs[m] for m in ("good", "fair")}
    d = choose_weights(two, y, {"good": 0.2, "fair": 0.8})
    seed_loss = ensemble.log_loss(ensemble.combine(two, {"good": 0.2, "fair": 0.8}), y)
    fit_loss = ensemble.log_loss(ensemble.combine(two, d.weights), y)
    assert d.log_loss["seed"] == pytest.approx(seed_loss, abs=1e-6) and fit_loss < seed_loss
    # convex objective: the optimum does not depend on where the fit starts
    other = choose_weights(two, y, {"good": 0.9, "fair": 0.1})
    assert other.weights == pytest.approx(d.weights, abs=2e-3)


def test_with_fitting_off_the_seed_weights_stay_but_the_baseline_rule_still_applies(evidence):
    y, probs = evidence
    d = choose_weights(probs, y, SEED, fit=False)
    assert d.method == "seed" and d.fallback == "ensemble.fit_weights is off"
    assert d.weights == pytest.approx({"good": 0.4, "fair": 0.6, "flat": 0.0})


def test_every_member_at_the_baseline_keeps_the_seed_weights_and_says_so(evidence):
    y, _ = evidence
    flat = np.tile([0.3, 0.7], (len(y), 1))
    d = choose_weights({"a": flat, "b": flat.copy()}, y, {"a": 0.25, "b": 0.75})
    assert d.method == "seed" and not d.zeroed
    assert d.weights == pytest.approx({"a": 0.25, "b": 0.75})
    assert "every member is at or below the majority-class baseline" in d.fallback


def test_too_few_evidence_rows_keep_the_seed_weights(evidence):
    y, probs = evidence
    d = choose_weights({m: p[:10] for m, p in probs.items()}, y[:10], SEED)
    assert d.method == "seed" and "only 10 dev rows" in d.fallback
    assert d.weights == pytest.approx(SEED)
    none = choose_weights({m: p[:0] for m, p in probs.items()}, y[:0], SEED)
    assert none.evidence == "none" and none.weights == pytest.approx(SEED)


def test_a_seed_weight_of_zero_stays_zero(evidence):
    y, probs = evidence
    d = choose_weights({m: probs[m] for m in ("good", "fair")}, y, {"good": 0.0, "fair": 1.0})
    assert d.weights == {"good": 0.0, "fair": 1.0}


def test_evidence_source_follows_cross_fitting():
    assert evidence_source("auto", 0) == "dev"
    assert evidence_source(None, 5) == "oof"
    assert evidence_source("dev", 5) == "dev"
    with pytest.raises(ensemble.EnsembleError, match="needs loop.cross_fit >= 2"):
        evidence_source("oof", 0)
    with pytest.raises(ensemble.EnsembleError, match="weights_from must be one of"):
        evidence_source("test", 0)


# --- the predict stage ---------------------------------------------------------------------------


class ConstantModel(SentimentModel):
    """A member with no signal: the same distribution for every text (always the first class).
    Registered as the `bert` kind for these tests, so the settings accept it as a member."""

    kind = "bert"

    def fit(self, texts, labels, *, init_from=None, eval_set=None):
        self.n_train_samples_ = len(texts)
        return self

    def predict_proba(self, texts):
        p = np.full((len(texts), self.n_classes), 0.2 / (self.n_classes - 1))
        p[:, 0] = 0.8
        return p

    def _save_weights(self, directory):
        pass

    def _load_weights(self, directory, extra):
        pass


@pytest.fixture
def stage(tmp_path, monkeypatch):
    from sentiloop.jsonio import read_json
    from sentiloop.layout import Layout
    from sentiloop.steps import predict, train

    monkeypatch.setitem(base.MODEL_KINDS, "bert", f"{__name__}:ConstantModel")
    rows = S.corpus(60)  # 36 dev rows: enough evidence (weights.MIN_ROWS)
    runs = iter(range(100))

    def run(cross_fit: int, **ens):
        prm = S.params(
            loop={"cross_fit": cross_fit},
            ensemble={
                "members": ["lexicon", "bert"],
                "fit_weights": True,
                "weights": {"lexicon": 0.3, "bert": 0.7},
                **ens,
            },
        )
        L = Layout(tmp_path / f"run{next(runs)}")
        S.write_store(L.store(0), rows)
        train.run(prm, L, "lexicon")
        const = ConstantModel(S.CLASSES).fit(["x"], np.array([0]))
        const.save(L.models(0) / "bert")
        for f in range(cross_fit):
            const.save(Layout.fold(L.models(0) / "bert", f))
        predict.predict(prm, L, 0, L.predictions(1))
        return read_json(L.eval(0)), rows

    return run


def test_predict_fits_weights_on_dev_and_zeroes_a_member_without_signal(stage):
    ev, rows = stage(0)
    w = ev["ensemble"]["weighting"]
    assert w["evidence"] == "dev" and w["n_rows"] == sum(r["split"] == "dev" for r in rows)
    assert ev["ensemble"]["weights"]["bert"] == 0.0 and ev["ensemble"]["weights"]["lexicon"] == 1.0
    assert "majority-class baseline" in ev["members"]["bert"]["weight_reason"]
    assert ev["members"]["bert"]["weight"] == 0.0
    # with the useless member silenced, the ensemble is the lexicon
    assert ev["ensemble"]["dev"]["accuracy"] == ev["members"]["lexicon"]["dev"]["accuracy"]


def test_predict_fits_weights_on_out_of_fold_train_rows_when_cross_fitting(stage):
    ev, rows = stage(2)
    w = ev["ensemble"]["weighting"]
    assert w["evidence"] == "oof" and w["n_rows"] == sum(r["split"] == "train" for r in rows)
    assert ev["ensemble"]["weights"]["bert"] == 0.0
    forced = stage(2, weights_from="dev")[0]["ensemble"]["weighting"]
    assert forced["evidence"] == "dev"


def test_the_report_says_why_a_member_got_weight_zero(stage, tmp_path):
    from sentiloop.jsonio import write_json
    from sentiloop.report import ReportData, weighting_from_metrics, write_report

    ev, _ = stage(0)
    metrics = tmp_path / "metrics"
    write_json(metrics / "eval/it0.json", ev)
    data = ReportData(classes=S.CLASSES, weighting=weighting_from_metrics(metrics))
    write_report(data, metrics / "report.md")
    md = (metrics / "report.md").read_text()
    section = md.split("## Ensemble weights", 1)[1].split("\n## ", 1)[0]
    assert "fitted on dev (36 rows)" in section
    assert "**bert** weight 0: dev accuracy 0.3333 <= majority-class baseline 0.3333" in section
