import numpy as np
import pytest

from sentiloop.ensemble import (
    EnsembleError,
    combine,
    confidence_and_agreement,
    contributions,
    fit_weights,
    imbalance,
    imbalance_ratio,
    log_loss,
    member_probas,
    normalised_weights,
    predict_proba,
    report,
)
from sentiloop.evaluation import label_quality, macro_f1


def _onehot(y, k=3, p=0.8):
    out = np.full((len(y), k), (1 - p) / (k - 1))
    out[np.arange(len(y)), y] = p
    return out


def test_weights_renormalise_over_enabled_members_and_every_member_needs_one():
    seed = {"bert": 0.30, "bilstm": 0.30, "lstm": 0.25, "lexicon": 0.15}  # conf/config.yaml's
    w = normalised_weights(["lexicon", "lstm"], seed)
    assert w == pytest.approx({"lexicon": 0.375, "lstm": 0.625})
    assert normalised_weights(["a", "b"]) == {"a": 0.5, "b": 0.5}  # none given: equal
    with pytest.raises(EnsembleError, match="no ensemble weight for \\['b'\\]"):
        normalised_weights(["a", "b"], {"a": 1.0})
    with pytest.raises(EnsembleError):
        normalised_weights(["a"], {"a": -1})
    with pytest.raises(EnsembleError):
        normalised_weights(["a", "b"], {"a": 0, "b": 0})


def test_combine_is_a_weighted_average():
    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    ens = combine({"a": a, "b": b}, {"a": 3, "b": 1})
    np.testing.assert_allclose(ens, [[0.75, 0.25], [0.5, 0.5]])
    np.testing.assert_allclose(combine({"a": a}), a)


def test_combine_rejects_inconsistent_members():
    a = np.array([[1.0, 0.0]])
    with pytest.raises(EnsembleError, match="shape"):
        combine({"a": a, "b": np.array([[1.0, 0.0, 0.0]])})
    with pytest.raises(EnsembleError, match="sum to 1"):
        combine({"a": np.array([[0.7, 0.7]])})
    with pytest.raises(EnsembleError, match="no member"):
        combine({})
    with pytest.raises(EnsembleError, match="finite"):
        combine({"a": np.array([[np.nan, 1.0]])})


def test_confidence_agreement_and_variance():
    a = np.array([[0.9, 0.1], [0.6, 0.4]])
    b = np.array([[0.9, 0.1], [0.2, 0.8]])
    c = np.array([[0.9, 0.1], [0.7, 0.3]])
    probs = {"a": a, "b": b, "c": c}
    ens = combine(probs, {"a": 1, "b": 1, "c": 1})
    conf, agree, var = confidence_and_agreement(probs, ens)
    np.testing.assert_allclose(conf, [0.9, 0.5])
    np.testing.assert_allclose(agree, [1.0, 2 / 3])
    assert var[0] == pytest.approx(0.0, abs=1e-12) and var[1] > 0.0
    np.testing.assert_allclose(var[1], np.var([0.6, 0.2, 0.7]))


def test_fit_weights_favours_the_informative_member_and_is_reproducible():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    good = _onehot(y, p=0.7)
    noise = rng.dirichlet(np.ones(3), size=400)
    probs = {"good": good, "noise": noise}
    w = fit_weights(probs, y, seed=1)
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-5)
    assert w["good"] > 0.9
    assert fit_weights(probs, y, seed=1) == w
    assert fit_weights(probs, y, seed=2) == pytest.approx(w, abs=1e-3)  # convex: same optimum
    assert log_loss(combine(probs, w), y) < log_loss(combine(probs, {"good": 0.5, "noise": 0.5}), y)
    assert fit_weights({"only": good}, y) == {"only": 1.0}
    with pytest.raises(EnsembleError, match="labels"):
        fit_weights(probs, y[:-1])


def test_leave_one_out_contributions():
    y = np.array([0, 1, 2, 0, 1, 2])
    right = _onehot(y)
    wrong = _onehot((y + 1) % 3)
    probs = {"right": right, "wrong": wrong}
    c = contributions(probs, y, {"right": 0.6, "wrong": 0.4})
    # with both the right member wins (F1 1.0); without "right" F1 is 0, without "wrong" still 1.0
    assert c == {"right": 1.0, "wrong": 0.0}
    assert contributions({"right": right}, y)["right"] > 0.5  # vs the majority baseline


def test_imbalance_flag_follows_the_seeds_three_times_rule():
    assert imbalance({"a": 0.09, "b": 0.02})
    assert not imbalance({"a": 0.05, "b": 0.02})
    assert imbalance({"a": 0.05, "b": 0.0})  # a member that adds nothing
    assert not imbalance({"a": 0.0, "b": -0.01})  # nobody contributes: nothing to compare
    assert not imbalance({"a": 0.3})
    assert imbalance_ratio({"a": 0.06, "b": 0.02}) == pytest.approx(3.0)
    assert not imbalance({"a": 0.06, "b": 0.02})  # "exceeds" 3x, not equals


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert macro_f1(y, p, 3) == pytest.approx(f1_score(y, p, average="macro"))


def test_macro_f1_counts_a_class_absent_from_truth_and_predictions_as_zero():
    """One definition for the loop, the gate and the benchmarks: every class of the task counts
    (the hand-written version skipped absent classes and disagreed with the gate)."""
    y, p = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])
    assert macro_f1(y, p, 3) == pytest.approx(2 / 3)
    assert macro_f1(["a", "b"], ["a", "b"], ["a", "b", "c"]) == pytest.approx(2 / 3)


def test_label_quality_is_one_definition_and_defined_on_empty_input():
    q = label_quality([0, 0, 1, 1, 1, 0], [1, 0, 0, 1, 1, 0], [0, 1, 0, 1, 1, 0])
    assert q["corrections"] == 2 and q["broken"] == 1 and q["n_train"] == 6
    assert q["correction_precision"] == pytest.approx(0.5) and q["correction_recall"] == pytest.approx(0.5)
    assert q["label_accuracy"] == pytest.approx(4 / 6) and q["original_label_accuracy"] == pytest.approx(4 / 6)
    empty = label_quality([], [], [])
    assert empty == {
        "label_accuracy": None,
        "original_label_accuracy": None,
        "n_train": 0,
        "corrections": 0,
        "correction_precision": None,
        "correction_recall": None,
        "broken": 0,
    }
    from sentiloop.benchmark.metrics import label_repair

    assert label_repair([], [], [])["label_accuracy"] is None  # the benchmark's view agrees


class _Const:
    """A fitted member that always answers the same distribution."""

    def __init__(self, row):
        self.row, self.n_classes = np.asarray(row, dtype=float), len(row)

    def predict_proba(self, texts):
        return np.tile(self.row, (len(texts), 1))


def test_predict_proba_is_the_weighted_vote_of_member_probas_in_any_chunking():
    models = {"a": _Const([0.9, 0.1]), "b": _Const([0.2, 0.8])}
    texts = [f"t{i}" for i in range(7)]
    probs = member_probas(models, texts)
    whole = predict_proba(models, {"a": 0.75, "b": 0.25}, texts)
    np.testing.assert_allclose(whole, combine(probs, {"a": 0.75, "b": 0.25}))
    np.testing.assert_allclose(
        predict_proba(models, {"a": 0.75, "b": 0.25}, texts, chunk_size=3), whole, rtol=1e-12, atol=1e-15
    )
    assert predict_proba(models, None, []).shape == (0, 2)


def test_report_is_json_ready():
    import json

    y = np.array([0, 1, 2, 0, 1, 2])
    r = report({"a": _onehot(y), "b": _onehot((y + 1) % 3)}, y, {"a": 0.6, "b": 0.4})
    json.dumps(r)
    assert r["dev_macro_f1"] == 1.0 and r["imbalanced"] is True and r["imbalance_ratio"] == "inf"


def test_contributions_when_fitted_weights_put_everything_on_one_member():
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = {"right": _onehot(y), "wrong": _onehot((y + 1) % 3), "other": _onehot((y + 2) % 3)}
    c = contributions(probs, y, {"right": 1.0, "wrong": 0.0, "other": 0.0})
    baseline = contributions({"right": probs["right"]}, y)["right"]  # vs the majority class
    assert c["right"] == baseline and c["wrong"] == 0.0 and c["other"] == 0.0
