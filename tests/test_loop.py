"""The loop on a corpus with planted noise (cleanlab-style: known flips, known seed)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_params
from sentiloop import pipeline, store
from sentiloop.correction import CorrectionError, assert_test_unchanged
from sentiloop.layout import Layout
from sentiloop.settings import validate_composed
from sentiloop.steps import correct


def test_loop_repairs_planted_noise(noisy_corpus, base_params, tmp_path):
    csv_path, flipped = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=3, cross_fit=0)
    summary = pipeline.run_loop(params, tmp_path / "run")
    q0, qn = summary["iterations"][0]["gold/label_accuracy"], summary["iterations"][-1]["gold/label_accuracy"]
    assert q0 == pytest.approx(0.70, abs=0.03)  # 30% planted noise in the train split
    assert qn >= q0 + 0.15, (q0, qn)  # the loop repairs at least half of it
    assert summary["iterations"][-1]["gold/correction_precision"] > 0.9


def test_cross_fit_judges_rows_out_of_fold(noisy_corpus, base_params, tmp_path):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=2, cross_fit=3)
    summary = pipeline.run_loop(params, tmp_path / "run")
    assert (tmp_path / "run/models/it1/lexicon/folds/f2/model.json").exists()
    assert not (tmp_path / "run/models/it2/lexicon/folds").exists()  # the last models judge nobody
    assert summary["iterations"][-1]["gold/label_accuracy"] > summary["iterations"][0]["gold/label_accuracy"] + 0.1


def test_test_split_never_corrected_and_history_recorded(noisy_corpus, base_params, tmp_path):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=2)
    pipeline.run_loop(params, tmp_path / "run")
    final = tmp_path / "run/data/final/sentences.sqlite"
    assert_test_unchanged(final)
    changed = store.count(final, "label != current_label")
    assert changed > 0
    assert store.count(final, "split != 'train' AND label != current_label") == 0
    # every change has provenance, and the final labels are what the history says
    con = store.connect(final, readonly=True)
    hist = con.execute("SELECT COUNT(DISTINCT sentence_id) FROM label_history").fetchone()[0]
    sources = {r[0] for r in con.execute("SELECT DISTINCT source FROM label_history")}
    con.close()
    assert hist >= changed and sources == {"ensemble"}


def test_gold_labels_are_not_read_by_the_loop(noisy_corpus, base_params, tmp_path):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=1)
    run = tmp_path / "run"
    pipeline.run_loop(params, run, until="ingest")
    assert store.count(run / "data/gold.sqlite", table="gold") > 0
    con = store.connect(run / "data/ingested.sqlite", readonly=True)
    cols = [r[1] for r in con.execute("PRAGMA table_info(sentences)")]
    con.close()
    assert "gold_label" not in cols and "gold" not in cols


def test_a_changed_test_label_is_caught(noisy_corpus, base_params, tmp_path):
    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=1)
    run = tmp_path / "run"
    pipeline.run_loop(params, run)
    db = run / "data/final/sentences.sqlite"
    con = store.connect(db)
    con.execute(
        "UPDATE sentences SET current_label = CASE current_label WHEN 'positive' THEN 'negative' "
        "ELSE 'positive' END WHERE rowid = (SELECT rowid FROM sentences WHERE split='test' LIMIT 1)"
    )
    con.commit()
    con.close()
    with pytest.raises(CorrectionError, match="test rows changed"):
        assert_test_unchanged(db)


def test_locked_rows_are_never_changed(noisy_corpus, base_params, tmp_path):
    csv_path, flipped = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=1)
    run = tmp_path / "run"
    pipeline.run_loop(params, run)
    # lock every train row of the it0 store and rerun the correction: nothing may change
    db0 = run / "data/it0/sentences.sqlite"
    con = store.connect(db0)
    con.execute("UPDATE sentences SET locked = 1 WHERE split = 'train'")
    con.commit()
    con.close()
    rec = correct.run(validate_composed(params), Layout(run), 1)  # correct@it1 again
    assert rec["changes"] == 0
    assert store.count(run / "data/it1/sentences.sqlite", "label != current_label") == 0


def test_planted_noise_runs_through_the_pipeline_and_is_scored_on_gold(tmp_path, base_params):
    """data.noise plants known flips at ingest: the labels as read become gold, the loop sees
    the noisy ones, the test split gets its true labels back, the summary scores against gold."""
    from conftest import synthetic_corpus, write_csv

    texts, gold = synthetic_corpus(1500, seed=7)
    names = np.array(["negative", "positive"])
    csv = write_csv(
        tmp_path / "clean.csv",
        [{"id": f"s{i}", "text": t, "label": names[g]} for i, (t, g) in enumerate(zip(texts, gold))],
    )
    params = tiny_params(base_params, csv, gold=False, iterations=2)
    params["data"]["noise"] = {"rate": 0.3, "matrix": None, "seed": 5}
    run = tmp_path / "run"
    summary = pipeline.run_loop(params, run)
    ingest = __import__("json").loads((run / "metrics/ingest.json").read_text())
    assert ingest["noise"]["planted"] == pytest.approx(450, abs=2)
    assert store.count(run / "data/gold.sqlite", table="gold") == 1500
    assert store.count(run / "data/it0/sentences.sqlite", "split = 'test' AND label != current_label") == 0
    first, last = summary["iterations"][0], summary["iterations"][-1]
    assert first["gold/label_accuracy"] == pytest.approx(0.70, abs=0.02)
    assert last["gold/label_accuracy"] >= 0.9 and last["gold/correction_precision"] >= 0.9
    # the test split is clean: no test row disagrees with gold
    con = store.connect(run / "data/final/sentences.sqlite", readonly=True)
    con.execute(f"ATTACH DATABASE '{run / 'data/gold.sqlite'}' AS g")
    wrong = con.execute(
        "SELECT COUNT(*) FROM sentences s JOIN g.gold AS t ON t.id = s.id "
        "WHERE s.split = 'test' AND s.label != t.gold_label"
    ).fetchone()[0]
    con.close()
    assert wrong == 0


def test_planted_noise_settings_are_checked(base_params, tmp_path):
    from sentiloop.errors import SettingsError

    params = tiny_params(base_params, tmp_path / "x.csv", gold=False)
    params["data"]["noise"] = {"rate": 0.0, "matrix": [[0.9, 0.2], [0.1, 0.9]], "seed": 1}
    with pytest.raises(SettingsError, match="every row must sum to 1"):
        validate_composed(params)
    params = tiny_params(base_params, tmp_path / "x.csv", gold=True)
    params["data"]["noise"] = {"rate": 0.3, "matrix": None, "seed": 1}
    with pytest.raises(SettingsError, match="already has gold labels"):
        validate_composed(params)


def test_dev_accuracy_is_corrected_for_the_estimated_noise():
    from sentiloop.steps.train import corrected_accuracy

    rng = np.random.default_rng(0)
    true = rng.integers(0, 2, 20000)
    T = np.array([[0.9, 0.1], [0.4, 0.6]])
    noisy = np.array([rng.choice(2, p=T[t]) for t in true])
    # a model whose predictions depend on the text only (as a model's do), some right, some wrong
    pred = np.where(rng.random(20000) < 0.8, true, 1 - true)
    assert np.mean(pred == noisy) < 0.7  # what noisy dev labels would say
    assert corrected_accuracy(pred, noisy, T) == pytest.approx(np.mean(pred == true), abs=0.02)
    assert corrected_accuracy(true, noisy, T) == pytest.approx(1.0, abs=0.02)


def test_retraining_keeps_the_best_dev_candidate_and_says_which(noisy_corpus, base_params, tmp_path):
    import json

    csv_path, _ = noisy_corpus
    params = tiny_params(base_params, csv_path, iterations=2)
    run = tmp_path / "run"
    pipeline.run_loop(params, run)
    for k in (1, 2):
        verdict = json.loads((run / f"models/it{k}/lexicon/guard.json").read_text())
        scores = verdict["dev_accuracy_estimate"]
        assert set(scores) == {"strategy", "previous", "scratch"}
        assert scores[verdict["kept"]] == max(scores.values())
