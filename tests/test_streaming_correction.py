"""The streaming relabel queue, correction decisions and split give exactly what the in-memory
versions give (same rows, same order), including confidence ties broken by id."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from conftest import schedule
from sentiloop import correction, split as split_mod, store
from sentiloop.predictions import PredictionsMismatch, train_chunks

CLASSES = ["negative", "neutral", "positive"]
SCHEDULES = [
    schedule("constant", 0.8, 0.8),
    schedule("linear", 0.9, 0.7),
    schedule("curriculum", 0.1, 0.3),
    schedule("class_balanced", 0.7, 0.6, max_drift=0.01),
]


def _rows(n=700, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"r{int(x):05d}" for x in rng.permutation(n * 3)[:n]]          # not in id order
    conf = rng.choice(np.array([0.4, 0.55, 0.7, 0.8, 0.9, 0.95, 1.0], dtype=np.float32), size=n)  # many ties
    cur = rng.choice(CLASSES, size=n, p=[0.5, 0.2, 0.3])
    ens = np.where(rng.random(n) < 0.35, rng.choice(CLASSES, size=n), cur)
    return pd.DataFrame({"id": ids, "current_label": cur, "locked": (rng.random(n) < 0.05).astype(int),
                         "ens_label": ens, "confidence": conf,
                         "agreement": rng.choice(np.array([1.0, 0.5], dtype=np.float32), size=n)})


def _chunks(frame: pd.DataFrame, size: int):
    return lambda: (frame.iloc[i:i + size].reset_index(drop=True) for i in range(0, len(frame), size))


def _answers(rows: pd.DataFrame) -> pd.DataFrame:
    pick = rows.sample(40, random_state=1)
    labels = np.array(CLASSES)[np.arange(40) % 3]
    return pd.DataFrame({"id": pick["id"].to_numpy(), "llm_label": labels,
                         "llm_confidence": np.linspace(0.5, 1.0, 40), "rationale": "because", "model": "m",
                         "status": ["answered", "cached", "error", "answered"] * 10,
                         "current_label": pick["current_label"].to_numpy()})


@pytest.mark.parametrize("max_rows", [1, 25, 2000])
@pytest.mark.parametrize("chunk", [1, 33, 5000])
def test_streamed_relabel_queue_equals_the_in_memory_one(max_rows, chunk):
    rows = _rows()
    free = rows[rows["locked"] == 0].reset_index(drop=True)
    want = correction.select_relabel_queue(free, 0.85, 0.6, max_rows)
    got = correction.stream_relabel_queue(_chunks(free, chunk)(), 0.85, 0.6, max_rows)
    assert len(want) == min(max_rows, len(want))
    pdt.assert_frame_equal(got, want)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
@pytest.mark.parametrize("cap", [0.02, 0.1, 1.0])
@pytest.mark.parametrize("chunk", [17, 5000])
def test_streamed_decision_equals_the_in_memory_one(schedule, cap, chunk):
    rows = _rows(seed=3)
    answers = _answers(rows)
    kw = dict(change_cap=cap, llm_answers=answers, llm_min_confidence=0.7, n_train=len(rows))
    want = correction.decide(rows, CLASSES, schedule, 2, 4, **kw)
    got = correction.decide_streaming(_chunks(rows, chunk), CLASSES, schedule, 2, 4, **kw)
    assert len(want.changes) > 0
    pdt.assert_frame_equal(got.changes, want.changes)
    assert got.thresholds == want.thresholds
    assert (got.eligible, got.capped) == (want.eligible, want.capped)


def test_streamed_decision_treats_extra_locked_ids_as_locked():
    rows = _rows(seed=5)
    human = set(rows.loc[rows["ens_label"] != rows["current_label"], "id"].iloc[:30])
    locked = rows.assign(locked=np.where(rows["id"].isin(human), 1, rows["locked"]))
    sched = SCHEDULES[0]
    want = correction.decide(locked, CLASSES, sched, 1, 3, change_cap=1.0)
    got = correction.decide_streaming(_chunks(rows, 50), CLASSES, sched, 1, 3, change_cap=1.0, extra_locked=human)
    pdt.assert_frame_equal(got.changes, want.changes)
    assert not set(got.changes["id"]) & human


def test_streamed_decision_rejects_unknown_ensemble_labels():
    rows = _rows(n=50)
    rows.loc[7, "ens_label"] = "sarcastic"
    with pytest.raises(correction.CorrectionError, match="sarcastic"):
        correction.decide_streaming(_chunks(rows, 10), CLASSES, SCHEDULES[0], 1, 3, change_cap=1.0)


# --- the pipeline's lockstep reader --------------------------------------------------------------
def _store_and_predictions(tmp_path, rows: pd.DataFrame, shuffle_predictions=False):
    db = tmp_path / "s.sqlite"
    with store.atomic_db(db) as con:
        store.create_sentences(con)
        splits = np.where(np.arange(len(rows)) % 5 == 0, "test", "train")
        con.executemany("INSERT INTO sentences (id, text, label, split, current_label, locked) VALUES (?,?,?,?,?,?)",
                        [(i, f"text of {i}", c, s, c, int(lk)) for i, c, s, lk in
                         zip(rows["id"], rows["current_label"], splits, rows["locked"])])
    pred = rows[["id", "ens_label", "confidence", "agreement"]].assign(split=splits)
    if shuffle_predictions:
        pred = pred.sample(frac=1.0, random_state=0)
    path = tmp_path / "p.parquet"
    pred.to_parquet(path, index=False, row_group_size=23)
    return db, path, rows[splits == "train"].reset_index(drop=True)


def test_train_chunks_join_store_and_predictions_row_for_row(tmp_path):
    rows = _rows(n=300)
    db, pred, train = _store_and_predictions(tmp_path, rows)
    got = pd.concat(list(train_chunks(db, pred, ["id", "current_label", "locked"], 31)),
                    ignore_index=True)
    assert got["id"].tolist() == train["id"].tolist()
    assert got["ens_label"].tolist() == train["ens_label"].tolist()
    np.testing.assert_array_equal(got["confidence"].to_numpy(), train["confidence"].to_numpy())


def test_train_chunks_fail_loudly_when_predictions_are_in_another_order(tmp_path):
    db, pred, _ = _store_and_predictions(tmp_path, _rows(n=300), shuffle_predictions=True)
    with pytest.raises(PredictionsMismatch, match="row for row"):
        list(train_chunks(db, pred, ["id"], 50))


def test_train_chunks_fail_when_a_prediction_is_missing(tmp_path):
    rows = _rows(n=100)
    db, pred, train = _store_and_predictions(tmp_path, rows)
    pd.read_parquet(pred).iloc[:-3].to_parquet(pred, index=False)
    with pytest.raises(PredictionsMismatch, match="no prediction for train id"):
        list(train_chunks(db, pred, ["id"], 50))


# --- split ------------------------------------------------------------------------------------
def _ingested(tmp_path, n=1000, order_seed=0, name="in.sqlite"):
    rng = np.random.default_rng(42)
    ids = [f"doc{i}" for i in range(n)]
    labels = rng.choice(CLASSES, size=n, p=[0.6, 0.1, 0.3])
    order = np.random.default_rng(order_seed).permutation(n)
    db = tmp_path / name
    with store.atomic_db(db) as con:
        store.create_sentences(con)
        con.executemany("INSERT INTO sentences (id, text, label) VALUES (?, ?, ?)",
                        [(ids[i], f"t{i}", labels[i]) for i in order])
    return db, np.array(ids), labels


def _splits(db):
    f = store.read_column_values(db, ["id", "label", "split", "current_label", "locked"])
    return f.sort_values("id").reset_index(drop=True)


def test_split_store_is_stratified_and_matches_assign_splits(tmp_path):
    db, ids, labels = _ingested(tmp_path)
    counts = split_mod.split_store(db, tmp_path / "out.sqlite", test_size=0.1, dev_size=0.1, seed=7)
    got = _splits(tmp_path / "out.sqlite")
    assert counts == got["split"].value_counts().to_dict()
    assert counts["test"] == 100 and counts["dev"] == 100 and counts["train"] == 800
    assert (got["current_label"] == got["label"]).all() and (got["locked"] == 0).all()
    for c in CLASSES:                                 # every class split in the same proportions
        n_c = int((labels == c).sum())
        n_test = int(((got["label"] == c) & (got["split"] == "test")).sum())
        assert abs(n_test - 0.1 * n_c) <= 1
    mem = pd.Series(split_mod.assign_splits(ids, labels, 0.1, 0.1, 7), index=ids).sort_index()
    assert got["split"].tolist() == mem.tolist()


def test_split_depends_on_seed_not_on_row_order(tmp_path):
    a, _, _ = _ingested(tmp_path, order_seed=0, name="a.sqlite")
    b, _, _ = _ingested(tmp_path, order_seed=1, name="b.sqlite")
    for src, dst, seed in ((a, "a1", 3), (b, "b1", 3), (a, "a2", 4)):
        split_mod.split_store(src, tmp_path / dst, test_size=0.2, dev_size=0.1, seed=seed)
    s_a1, s_b1, s_a2 = (_splits(tmp_path / d)["split"] for d in ("a1", "b1", "a2"))
    assert s_a1.tolist() == s_b1.tolist()
    assert s_a1.tolist() != s_a2.tolist()


def test_split_rejects_bad_sizes_and_too_few_rows(tmp_path):
    db, _, _ = _ingested(tmp_path, n=3)
    with pytest.raises(split_mod.SplitError, match="test_size \\+ dev_size < 1"):
        split_mod.split_store(db, tmp_path / "o.sqlite", test_size=0.6, dev_size=0.5, seed=0)
    with pytest.raises(split_mod.SplitError, match="need 0 < test_size"):
        split_mod.assign_splits(np.array(["a"]), np.array(["x"]), 0.0, 0.1, 0)
    with pytest.raises(split_mod.SplitError, match="at least one of each"):
        split_mod.split_store(db, tmp_path / "o.sqlite", test_size=0.5, dev_size=0.4, seed=0)


def test_split_takes_an_explicit_assignment(tmp_path):
    db, ids, _ = _ingested(tmp_path, n=20)
    want = {i: ("test" if k < 5 else "train") for k, i in enumerate(ids)}
    from sentiloop.benchmark.loop_arm import fixed_splits
    with fixed_splits(want):
        split_mod.split_store(db, tmp_path / "o.sqlite", test_size=0.1, dev_size=0.1, seed=0)
    assert split_mod.FIXED_ASSIGNMENT is None
    got = _splits(tmp_path / "o.sqlite")
    assert dict(zip(got["id"], got["split"])) == want
    want.pop(ids[3])
    with pytest.raises(split_mod.SplitError, match="has no split"):
        split_mod.split_store(db, tmp_path / "o2.sqlite", test_size=0.1, dev_size=0.1, seed=0, assignment=want)


@pytest.mark.parametrize("max_drift", [0.0, 0.02, 0.1])
def test_mitigation_from_counts_equals_bias_stats(max_drift):
    from sentiloop.analysis.mitigation import mitigation_from_counts
    from sentiloop.analysis.stats import bias_stats
    rows = _rows(n=500, seed=9)
    labels = pd.DataFrame({"id": rows["id"], "label": rows["current_label"], "current_label": rows["ens_label"]})
    s = bias_stats(labels, CLASSES, max_drift=max_drift, split=None)
    want = {**s["mitigation"], "max_abs_drift": s["max_abs_drift"], "max_drift_class": s["max_drift_class"]}
    pairs = labels.groupby(["label", "current_label"]).size().reset_index().itertuples(index=False)
    assert mitigation_from_counts(list(pairs), CLASSES, max_drift) == want
