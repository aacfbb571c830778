"""The benchmark's parts that need no corpus: subset drawing, noise on train only, scoring, report."""

import numpy as np
import pandas as pd
import pytest

from sentiloop.benchmark.data import BenchmarkDataError, SubsetSpec, draw_subset, plant_on_train
from sentiloop.benchmark.metrics import label_repair, score_test_set
from sentiloop.benchmark.report import COLUMNS, markdown_table, plot_iterations, replace_section


def _corpus(n_neg=300, n_pos=900):
    gold = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    return pd.DataFrame(
        {"id": [f"r{i}" for i in range(gold.size)], "text": [f"text {i}" for i in range(gold.size)], "gold": gold}
    )


def test_balanced_subset_has_equal_classes_and_disjoint_splits():
    spec = SubsetSpec(n_train=200, n_test=100, seed=1)
    sub = draw_subset(_corpus(), spec)
    assert (sub["split"] == "train").sum() == 200 and (sub["split"] == "test").sum() == 100
    for split in ("train", "test"):
        assert sub.loc[sub["split"] == split, "gold"].mean() == pytest.approx(0.5)
    assert sub["id"].is_unique
    assert draw_subset(_corpus(), spec).equals(sub)  # seeded
    assert not draw_subset(_corpus(), SubsetSpec(n_train=200, n_test=100, seed=2)).equals(sub)


def test_imbalanced_subset_keeps_the_natural_mix_and_too_small_corpus_is_refused():
    sub = draw_subset(_corpus(), SubsetSpec(n_train=800, n_test=200, balanced=False))
    assert 0.65 < sub["gold"].mean() < 0.85
    with pytest.raises(BenchmarkDataError, match="balanced subset needs"):
        draw_subset(_corpus(n_neg=50), SubsetSpec(n_train=200, n_test=100))


def test_noise_is_planted_on_train_rows_only():
    spec = SubsetSpec(n_train=400, n_test=100, noise_rate=0.3)
    frame, planted = plant_on_train(draw_subset(_corpus(), spec), spec)
    train = frame["split"] == "train"
    assert frame.loc[~train, "flipped"].sum() == 0
    assert (frame.loc[~train, "noisy"] == frame.loc[~train, "gold"]).all()
    assert frame.loc[train, "flipped"].sum() == planted.n_flipped == 120


def test_label_repair_counts_right_and_wrong_corrections():
    gold = np.array([0, 0, 1, 1, 1, 0])
    noisy = np.array([1, 0, 0, 1, 1, 0])  # rows 0 and 2 are wrong
    final = np.array([0, 1, 0, 1, 1, 0])  # fixes row 0, breaks row 1, misses row 2
    r = label_repair(gold, noisy, final)
    assert r["n_corrections"] == 2
    assert r["correction_precision"] == pytest.approx(0.5)
    assert r["correction_recall"] == pytest.approx(0.5)
    assert r["label_accuracy"] == pytest.approx(4 / 6)
    none = label_repair(gold, noisy, noisy)
    assert none["n_corrections"] == 0 and none["correction_precision"] is None


def test_label_repair_for_pruning_scores_removals():
    gold = np.array([0, 0, 1, 1])
    noisy = np.array([1, 0, 0, 1])
    kept = np.array([False, False, True, True])  # removes the wrong row 0 and the right row 1
    r = label_repair(gold, noisy, noisy, kept=kept)
    assert r["n_train"] == 2 and r["n_corrections"] == 2
    assert r["correction_precision"] == pytest.approx(0.5)
    assert r["correction_recall"] == pytest.approx(0.5)
    assert r["label_accuracy"] == pytest.approx(0.5)


def test_score_test_set_macro_f1():
    s = score_test_set([0, 0, 1, 1], [0, 1, 1, 1], 2)
    assert s["test_accuracy"] == pytest.approx(0.75)
    assert s["test_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def _row(arm, **kw):
    base = {k: 0.5 for k, _ in COLUMNS}
    base.update(arm=arm, n_corrections=3, wall_s=1.0, peak_rss_mb=100.0)
    base.update(kw)
    return base


def test_table_refuses_rows_missing_a_column_and_plot_is_a_png(tmp_path):
    with pytest.raises(ValueError, match="lack table columns"):
        markdown_table([{"arm": "none"}])
    trace = [{"iteration": i, "label_accuracy": 0.7 + i / 100, "test_macro_f1": 0.7} for i in range(3)]
    rows = [_row("none"), _row("sentiloop:linear", trace=trace), _row("ceiling")]
    table = markdown_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "schedule `linear`" in table
    png = plot_iterations(rows, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replace_section_rewrites_only_its_own_block(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nsomeone else's text\n")
    replace_section(doc, "bench:x", "first", heading="X")
    replace_section(doc, "bench:x", "second", heading="X")
    text = doc.read_text()
    assert "someone else's text" in text and "second" in text and "first" not in text
    assert text.count("## X") == 1
