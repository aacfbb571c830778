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
    have = {r[1] for r in _store(L, "PRAGMA table_info(sentences)")}
    p_wrong = dict(_store(L, "SELECT id, p_wrong FROM sentences")) if "p_wrong" in have else {}

    def expected(rid, label, current):  # docs/review.md: how likely the current label is wrong
        ens = 1 - preds.loc[rid, f"p_ens_{current}"]
        pw = p_wrong.get(rid)
        if pw is None:
            return ens
        return pw if label == current else max(1 - pw, ens)

    assert q["score"].to_numpy() == pytest.approx([expected(*r) for r in zip(q["id"], q["label"], q["current_label"])])
    assert (np.diff(q["score"].to_numpy()) <= 1e-12).all()
    changed = q[q["label"] != q["current_label"]]
    assert len(changed) and (changed["reason"] == "changed").all() and (changed["source"] == "ensemble").all()
    # every queued row's label_history is the store's, in order
    for rid, hist in zip(q["id"], q["history"]):
        rows = _store(
            L,
            "SELECT iteration, old_label, new_label, source FROM label_history WHERE sentence_id = ? ORDER BY rowid",
            (rid,),
        )
        assert [(h["iteration"], h["old_label"], h["new_label"], h["source"]) for h in json.loads(hist)] == [
            tuple(r) for r in rows
        ]


def test_overview_and_iterations(run):
    prm, L = run
    ov, its = load_overview(L), load_iterations(L)
    assert ov["rows"] == 90 and ov["splits"] == {"train": 54, "dev": 18, "test": 18}
    assert set(ov["distribution"]) == {"original", "it1", "it2"}
    assert ov["distribution"]["original"] == {"negative": 18, "neutral": 19, "positive": 17}
    changed = _store(L, "SELECT COUNT(*) FROM sentences WHERE split = 'train' AND label != current_label")[0][0]
    assert ov["queue"]["changed"] == changed > 0
    final = dict(_store(L, "SELECT current_label, COUNT(*) FROM sentences WHERE split = 'train' GROUP BY 1"))
    assert ov["distribution"]["it2"] == ov["final_distribution"] == final
    for k, rec in zip((1, 2), its):
        metrics = json.loads(L.iteration_metrics(k).read_text())
        assert ov["corrections_by_source"][f"it{k}"] == metrics["corrections_by_source"] == rec["corrections_by_source"]
        assert rec["changes"] == metrics["changes"] and rec["label_change_rate"] == metrics["label_change_rate"]
    assert sum(v for r in its for v in r["corrections_by_source"].values()) >= changed
    assert ov["termination_reason"] == "max_iterations" and ov["lexicon_top_words"]["negative"]
    assert [i["k"] for i in its] == [1, 2]


def test_newer_store_columns_p_wrong_aside_source_are_used_when_present(run):
    """p_wrong estimates that the original label is wrong: the score of a row on its original
    label; for a changed row 1 - p_wrong is a floor under the ensemble's 1 - P(current)."""
    prm, L = run
    have = {r[1] for r in _store(L, "PRAGMA table_info(sentences)")}
    for col, kind in (("aside", "INTEGER NOT NULL DEFAULT 0"), ("p_wrong", "REAL"), ("source", "TEXT")):
        if col not in have:
            _store(L, f"ALTER TABLE sentences ADD COLUMN {col} {kind}")
    rows = _store(L, "SELECT id, label, current_label FROM sentences WHERE split = 'train' ORDER BY rowid")
    same = [i for i, lab, cur in rows if lab == cur]
    changed = [i for i, lab, cur in rows if lab != cur]
    _store(L, "UPDATE sentences SET p_wrong = CASE WHEN label = current_label THEN 0.01 ELSE 0.99 END")
    _store(L, "UPDATE sentences SET p_wrong = 0.98, aside = 1, source = 'llm' WHERE id = ?", (same[7],))
    _store(L, "UPDATE sentences SET p_wrong = 0.5 WHERE id = ?", (same[3],))
    _store(L, "UPDATE sentences SET p_wrong = 0.2 WHERE id = ?", (changed[0],))  # original likely right
    ov = build(prm, L)
    q = load_queue(L).set_index("id")
    preds = pd.read_parquet(L.final_predictions).set_index("id")
    p_cur = {i: preds.loc[i, f"p_ens_{c}"] for i, c in zip(q.index, q["current_label"])}
    assert q.loc[same[7], "score"] == 0.98 and q.loc[same[3], "score"] == 0.5
    assert q.loc[same[7], "reason"] == "set aside" and q.loc[same[7], "source"] == "llm"
    assert q.loc[changed[0], "score"] == pytest.approx(max(0.8, 1 - p_cur[changed[0]]))
    for i in changed[1:]:
        assert q.loc[i, "score"] == pytest.approx(max(0.01, 1 - p_cur[i]))
    for i in same:
        if i not in (same[3], same[7]):
            assert q.loc[i, "score"] == 0.01
    ranked = load_queue(L)["id"].tolist()
    assert ranked.index(same[7]) < ranked.index(same[3]) and ranked[0] in (same[7], changed[0])
    assert ov["queue"]["aside"] == 1 and ov["queue"]["store_columns"] == ["aside", "p_wrong", "source"]


def test_llm_answers_and_rationale_reach_the_queue(run):
    prm, L = run
    q = load_queue(L)
    rid = q["id"][2]
    pd.DataFrame(
        [
            {
                "id": rid,
                "llm_label": "neutral",
                "llm_confidence": 0.8,
                "rationale": "no sentiment words",
                "status": "answered",
            },
            {"id": q["id"][3], "llm_label": None, "llm_confidence": None, "rationale": None, "status": "failed"},
        ]
    ).to_parquet(L.relabel(prm.loop.max_iterations), index=False)
    build(prm, L)
    q = load_queue(L).set_index("id")
    assert (q.loc[rid, "llm_label"], q.loc[rid, "llm_confidence"], q.loc[rid, "llm_rationale"]) == (
        "neutral",
        0.8,
        "no sentiment words",
    )
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
    build(prm, L)  # the full queue starts with the same five
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
    s.decide("t1", "choose", "neutral")  # changed their mind: one row, moved last
    assert s.path.read_text() == ("id,label,reviewer,action\nt2,,ann lee,skip\nt1,neutral,ann lee,choose\n")
    assert [p.name for p in fb.iterdir()] == [s.path.name]  # no temporary files left
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
    assert dict(zip(acc["id"], zip(acc["label"], acc["reviewer"]))) == {
        ids[0]: ("neutral", "ann"),
        ids[2]: ("positive", "bo"),
    }
