"""Stage review_data's summaries (data/review/) and the per-session feedback files of the app."""
from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

import app_support as A
from sentiloop.feedback import load_feedback
from sentiloop.layout import Layout
from sentiloop.review_data import ReviewDataError, build, load_iterations, load_overview, load_queue
from sentiloop.review_session import ReviewSession, ReviewSessionError

CLASSES = A.S.CLASSES


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rd") / "repo"
    A.make_run(root)
    return root


@pytest.fixture
def run(run_dir, tmp_path):
    dst = tmp_path / "repo"
    shutil.copytree(run_dir, dst)
    return A.settings(), Layout(dst)


def _store(L, sql, *args):
    con = sqlite3.connect(L.final_store)
    out = con.execute(sql, *args).fetchall()
    con.commit()
    con.close()
    return out


def test_queue_ranks_unlocked_train_rows_by_the_chance_the_label_is_wrong(run):
    prm, L = run
    q = load_queue(L)
    store = dict((r[0], r[1:]) for r in _store(L, "SELECT id, split, locked, label, current_label FROM sentences"))
    train = [i for i, (split, locked, *_) in store.items() if split == "train" and not locked]
    assert sorted(q["id"]) == sorted(train) and q["rank"].tolist() == list(range(1, len(q) + 1))
    preds = pd.read_parquet(L.final_predictions).set_index("id")
    expected = [1 - preds.loc[i, f"p_ens_{c}"] for i, c in zip(q["id"], q["current_label"])]
    assert q["score"].to_numpy() == pytest.approx(expected)
    assert (np.diff(q["score"].to_numpy()) <= 1e-12).all()
    changed = q[q["label"] != q["current_label"]]
    assert len(changed) and (changed["reason"] == "changed").all() and (changed["source"] == "ensemble").all()
    # every queued row's label_history is the store's, in order
    for rid, hist in zip(q["id"], q["history"]):
        rows = _store(L, "SELECT iteration, old_label, new_label, source FROM label_history WHERE sentence_id = ? "
                         "ORDER BY rowid", (rid,))
        assert [(h["iteration"], h["old_label"], h["new_label"], h["source"]) for h in json.loads(hist)] == \
            [tuple(r) for r in rows]


def test_overview_and_iterations(run):
    prm, L = run
    ov, its = load_overview(L), load_iterations(L)
    assert ov["rows"] == 90 and ov["splits"] == {"train": 54, "dev": 18, "test": 18}
    assert set(ov["distribution"]) == {"original", "it1", "it2"}
    assert ov["distribution"]["original"] == {"negative": 18, "neutral": 19, "positive": 17}
    assert ov["corrections_by_source"]["it1"]["ensemble"] == ov["queue"]["changed"] == 11
    assert ov["termination_reason"] == "max_iterations" and ov["lexicon_top_words"]["negative"]
    assert [i["k"] for i in its] == [1, 2] and its[0]["changes"] == 11


def test_newer_store_columns_p_wrong_aside_source_are_used_when_present(run):
    prm, L = run
    _store(L, "ALTER TABLE sentences ADD COLUMN aside INTEGER NOT NULL DEFAULT 0")
    _store(L, "ALTER TABLE sentences ADD COLUMN p_wrong REAL")
    _store(L, "ALTER TABLE sentences ADD COLUMN source TEXT")
    ids = [r[0] for r in _store(L, "SELECT id FROM sentences WHERE split = 'train' ORDER BY rowid")]
    _store(L, "UPDATE sentences SET p_wrong = 0.01")
    _store(L, "UPDATE sentences SET p_wrong = 0.99, aside = 1, source = 'llm' WHERE id = ?", (ids[7],))
    _store(L, "UPDATE sentences SET p_wrong = 0.5 WHERE id = ?", (ids[3],))
    ov = build(prm, L)
    q = load_queue(L)
    assert q["id"].tolist()[:2] == [ids[7], ids[3]]
    assert q.loc[0, "reason"] == "set aside" and q.loc[0, "source"] == "llm"
    assert q["score"].tolist()[:2] == [0.99, 0.5]
    assert ov["queue"]["aside"] == 1 and ov["queue"]["store_columns"] == ["aside", "p_wrong", "source"]


def test_llm_answers_and_rationale_reach_the_queue(run):
    prm, L = run
    q = load_queue(L)
    rid = q["id"][2]
    pd.DataFrame([{"id": rid, "llm_label": "neutral", "llm_confidence": 0.8, "rationale": "no sentiment words",
                   "status": "answered"},
                  {"id": q["id"][3], "llm_label": None, "llm_confidence": None, "rationale": None,
                   "status": "failed"}]).to_parquet(L.relabel(prm.loop.max_iterations), index=False)
    build(prm, L)
    q = load_queue(L).set_index("id")
    assert (q.loc[rid, "llm_label"], q.loc[rid, "llm_confidence"], q.loc[rid, "llm_rationale"]) == \
        ("neutral", 0.8, "no sentiment words")
    assert q["llm_label"].notna().sum() == 1 and q.loc[rid, "reason"] == "queued for relabel"


def test_dated_rows_give_a_distribution_per_month(run):
    prm, L = run
    _store(L, "ALTER TABLE sentences ADD COLUMN date TEXT")
    _store(L, "UPDATE sentences SET date = CASE WHEN rowid % 2 = 0 THEN '2024-01-15' ELSE '2024-02-03' END")
    ov = build(prm, L)
    assert ov["date_column"] == "date" and list(ov["by_month"]) == ["2024-01", "2024-02"]
    assert sum(sum(m.values()) for m in ov["by_month"].values()) == 54


def test_queue_size_bounds_the_queue(run):
    prm, L = run
    build(prm.merged({"review": {"queue_size": 5}}), L)
    q = load_queue(L)
    assert len(q) == 5 and q["rank"].tolist() == [1, 2, 3, 4, 5]
    build(prm, L)                                     # the full queue starts with the same five
    assert load_queue(L)["id"].tolist()[:5] == q["id"].tolist()


def test_bad_outputs_are_one_line_errors(run):
    prm, L = run
    preds = pd.read_parquet(L.final_predictions)
    preds.iloc[::-1].to_parquet(L.final_predictions, index=False)
    with pytest.raises(ReviewDataError, match="does not match .* row for row: rerun predict_final"):
        build(prm, L)
    preds.iloc[:-3].to_parquet(L.final_predictions, index=False)
    with pytest.raises(ReviewDataError, match="fewer rows than"):
        build(prm, L)
    preds.drop(columns=[f"p_ens_{c}" for c in CLASSES]).to_parquet(L.final_predictions, index=False)
    with pytest.raises(ReviewDataError, match="no ensemble columns"):
        build(prm, L)
    L.final_predictions.unlink()
    with pytest.raises(ReviewDataError, match=r"predictions.parquet: missing; run `dvc repro`"):
        build(prm, L)


# --- the reviewer's session file ------------------------------------------------------------------
def test_session_file_is_rewritten_whole_one_row_per_id_and_reopened(tmp_path):
    fb = tmp_path / "feedback"
    s = ReviewSession(fb, "ann lee", CLASSES, session_id="20250101T000000-abcdef")
    assert s.path.name == "app-ann_lee-20250101T000000-abcdef.csv" and not s.path.exists()
    s.decide("t1", "accept", "positive")
    s.decide("t2", "skip")
    s.decide("t1", "choose", "neutral")             # changed their mind: one row, moved last
    assert s.path.read_text() == ("id,label,reviewer,action\nt2,,ann lee,skip\nt1,neutral,ann lee,choose\n")
    assert [p.name for p in fb.iterdir()] == [s.path.name]          # no temporary files left
    again = ReviewSession(fb, "ann lee", CLASSES, session_id=s.session_id)
    assert again.decisions == s.decisions
    other = ReviewSession(fb, "ann lee", CLASSES)
    assert other.path != s.path


def test_session_refuses_bad_decisions_and_writes_nothing(tmp_path):
    fb = tmp_path / "feedback"
    s = ReviewSession(fb, "bo", CLASSES)
    with pytest.raises(ReviewSessionError, match=r"label 'happy' for id t1: not one of the classes"):
        s.decide("t1", "choose", "happy")
    with pytest.raises(ReviewSessionError, match="unknown action 'delete'"):
        s.decide("t1", "delete", "neutral")
    with pytest.raises(ReviewSessionError, match="needs a row id"):
        s.decide(" ", "accept", "neutral")
    assert not fb.exists() or not list(fb.iterdir())
    for bad in ("", "../x", "a" * 41, "x,y"):
        with pytest.raises(ReviewSessionError, match="reviewer name"):
            ReviewSession(fb, bad, CLASSES)
    with pytest.raises(ReviewSessionError, match="session id"):
        ReviewSession(fb, "bo", CLASSES, session_id="../../etc")
    fb.mkdir(parents=True, exist_ok=True)
    (fb / "app-bo-20250101T000000-000000.csv").write_text("id,label\nt1,positive\n")
    with pytest.raises(ReviewSessionError, match="not a review-app session file"):
        ReviewSession(fb, "bo", CLASSES, session_id="20250101T000000-000000")


def test_session_files_are_what_load_feedback_reads(run):
    prm, L = run
    fb = L.feedback(prm.feedback.dir)
    ids = load_queue(L)["id"].tolist()
    a = ReviewSession(fb, "ann", CLASSES)
    a.decide(ids[0], "choose", "neutral")
    a.decide(ids[1], "skip")
    b = ReviewSession(fb, "bo", CLASSES)
    b.decide(ids[2], "accept", "positive")
    acc, rej = load_feedback(fb, CLASSES, L.final_store)
    assert rej.empty and acc.attrs["unreviewed"] == 1
    assert dict(zip(acc["id"], zip(acc["label"], acc["reviewer"]))) == {ids[0]: ("neutral", "ann"),
                                                                       ids[2]: ("positive", "bo")}
