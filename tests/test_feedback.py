"""Human feedback: review export, strict import with reasons, and locks that survive the loop."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

import ops_support as S
from sentiloop.cli import main
from sentiloop.feedback import FeedbackError, apply_feedback, export_review, feedback_stats, load_feedback
from sentiloop.store import fingerprint, iter_chunks


@pytest.fixture
def store_db(tmp_path):
    return S.write_store(tmp_path / "store.sqlite", S.corpus(10))


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)


def test_load_feedback_accepts_good_rows_and_rejects_bad_ones_with_reasons(tmp_path, store_db):
    fb = tmp_path / "feedback"
    _write(fb / "README.md", "# not a feedback file")
    # t0..: train rows are i//3 % 5 in (0,1,2); t12 is dev... t14 (i=14 -> 4) is test
    _write(
        fb / "a.csv",
        "id,text,label,reviewer\n"
        "t0,x,positive,ann\n"  # accepted (changes negative -> positive)
        "t1,x,Neutral,ann\n"  # accepted, label case-folded
        "t2,x,,ann\n"  # not reviewed: skipped, not rejected
        "nope,x,positive,ann\n"  # unknown id
        "t3,x,happy,ann\n"  # unknown label
        "t13,x,positive,ann\n"  # test split: held out
        "t4,x,negative,ann\n"  # conflicts with b.csv
        "t5,x,negative,ann\n",
    )  # identical in b.csv: folded into one
    _write(fb / "b.csv", "label,id\npositive,t4\nnegative,t5\n")
    _write(fb / "broken.csv", 'id,label\nt6,positive\nt7,"negative\n')  # unterminated quote
    _write(fb / "ragged.csv", "id,label\nt6,positive\nt7,negative,extra\n")  # ragged row
    _write(fb / "nolabel.csv", "id,answer\nt6,positive\n")  # missing column
    _write(fb / "latin1.csv", "id,label\nt6,positive\ncafé,neutral\n", encoding="latin-1")
    _write(fb / "notes.xlsx", b"PK\x03\x04")

    acc, rej = load_feedback(fb, S.CLASSES, store_db)
    assert sorted(acc["id"]) == ["t0", "t1", "t5"]
    assert dict(zip(acc["id"], acc["label"])) == {"t0": "positive", "t1": "neutral", "t5": "negative"}
    assert acc.set_index("id").loc["t0", "reviewer"] == "ann"
    reasons = {(r.file, r.id): r.reason for r in rej.itertuples()}
    assert "unknown id" in reasons[("a.csv", "nope")]
    assert "unknown label 'happy'" in reasons[("a.csv", "t3")]
    assert "'test' split" in reasons[("a.csv", "t13")]
    assert "conflicting labels" in reasons[("a.csv", "t4")] and "conflicting labels" in reasons[("b.csv", "t4")]
    for name in ("broken.csv", "ragged.csv", "nolabel.csv", "latin1.csv"):
        assert reasons[(name, None)].startswith("whole file rejected"), name
    assert "missing required column(s) ['label']" in reasons[("nolabel.csv", None)]
    assert "UTF-8" in reasons[("latin1.csv", None)]
    assert "unsupported file type .xlsx" in reasons[("notes.xlsx", None)]
    # nothing from a structurally broken file leaks in, even its valid-looking rows
    assert "t6" not in set(acc["id"]) and "t7" not in set(acc["id"])
    stats = feedback_stats(acc, rej)
    assert stats["accepted"] == 3 and stats["unreviewed"] == 1 and stats["duplicates"] == 1
    assert stats["rejected_files"] == 5 and stats["reject_reasons"]["conflicting labels"] == 2


def test_apply_feedback_locks_and_is_idempotent(tmp_path, store_db):
    fb = tmp_path / "feedback"
    _write(fb / "r.csv", "id,label,reviewer\nt0,positive,bo\nt1,neutral,bo\n")
    acc, rej = load_feedback(fb, S.CLASSES, store_db)
    assert rej.empty
    con = sqlite3.connect(store_db)
    assert apply_feedback(con, acc, iteration=1) == 1  # t1 already neutral: locked, no history row
    assert apply_feedback(con, acc, iteration=2) == 0
    con.commit()
    rows = dict(
        con.execute("SELECT id, current_label || ':' || locked FROM sentences WHERE id IN ('t0','t1')").fetchall()
    )
    history = con.execute(
        "SELECT sentence_id, iteration, old_label, new_label, source, detail FROM label_history"
    ).fetchall()
    con.close()
    assert rows == {"t0": "positive:1", "t1": "neutral:1"}
    assert history == [("t0", 1, "negative", "positive", "human", "reviewer=bo;file=r.csv")]


def test_review_export_lists_most_uncertain_unlocked_train_rows(tmp_path):
    rows = S.corpus(30)
    rows[0]["locked"] = 1
    root = tmp_path
    S.run_loop(root, rows, S.params(loop={"max_iterations": 1}))
    preds = root / "data/it1/predictions.parquet"
    out = export_review(preds, root / "data/it1/sentences.sqlite", root / "review.csv", classes=S.CLASSES, n=5)
    review = pd.read_csv(root / "review.csv", keep_default_na=False)
    assert len(review) == len(out) == 5
    assert review.columns.tolist() == [
        "id",
        "text",
        "original_label",
        "current_label",
        "proposed_label",
        "confidence",
        "margin",
        "p_ens_negative",
        "p_ens_neutral",
        "p_ens_positive",
        "label",
        "reviewer",
        "corpus",
    ]
    assert set(review["corpus"]) == {fingerprint(root / "data/it1/sentences.sqlite")}
    assert (review["label"] == "").all() and "t0" not in set(review["id"])
    original = {r["id"]: r["label"] for r in rows}
    assert review["original_label"].tolist() == [original[i] for i in review["id"]]
    pcols = [f"p_ens_{c}" for c in S.CLASSES]
    assert review["proposed_label"].tolist() == [S.CLASSES[i] for i in review[pcols].to_numpy().argmax(axis=1)]
    p = pd.read_parquet(preds)
    p = p[(p["split"] == "train") & (p["id"] != "t0")]
    probs = p[[f"p_ens_{c}" for c in S.CLASSES]].to_numpy()
    probs = np.sort(probs, axis=1)
    margins = sorted(probs[:, -1] - probs[:, -2])
    assert review["margin"].tolist() == pytest.approx(margins[:5], abs=1e-4)
    # the round trip: a reviewed export is valid feedback
    review.loc[:1, "label"] = "neutral"
    (root / "fb").mkdir()
    review.to_csv(root / "fb/reviewed.csv", index=False)
    acc, rej = load_feedback(root / "fb", S.CLASSES, root / "data/it1/sentences.sqlite")
    assert rej.empty and len(acc) == 2
    # and through the CLI
    assert (
        main(
            [
                "review",
                "export",
                "--classes",
                *S.CLASSES,
                "-n",
                "3",
                "-k",
                "1",
                "--predictions",
                str(preds),
                "--store",
                str(root / "data/it1/sentences.sqlite"),
                "-o",
                str(root / "r2.csv"),
            ]
        )
        == 0
    )
    assert len(pd.read_csv(root / "r2.csv")) == 3


def _row(db, rid):
    frame = next(iter_chunks(db, ("current_label", "locked"), where="id = ?", params=(rid,)))
    return frame.iloc[0]["current_label"], int(frame.iloc[0]["locked"])


def test_locked_human_label_survives_every_later_iteration(tmp_path):
    """A human label the ensemble disagrees with strongly: without the lock the loop flips it
    (control run), with the lock every iteration's store keeps it, and the final one too."""
    rows = S.corpus(30)
    target = next(r for r in rows if r["split"] == "train" and r["label"] == "positive")
    prm = S.params(loop={"max_iterations": 3})

    control = tmp_path / "control"
    fb_empty = control / "feedback"
    fb_empty.mkdir(parents=True)
    # the "human" label is wrong for the text, so an unlocked row is corrected back by the loop
    rows_control = [dict(r) for r in rows]
    next(r for r in rows_control if r["id"] == target["id"])["current_label"] = "negative"
    S.run_loop(control, rows_control, prm, feedback_dir=fb_empty)
    assert _row(control / "data/it1/sentences.sqlite", target["id"]) == ("positive", 0)

    run = tmp_path / "run"
    fb = run / "feedback"
    _write(fb / "review.csv", f"id,label,reviewer\n{target['id']},negative,cy\n")
    S.run_loop(run, [dict(r) for r in rows], prm, feedback_dir=fb)
    for k in (1, 2, 3):
        assert _row(run / f"data/it{k}/sentences.sqlite", target["id"]) == ("negative", 1), k
        rec = S.read_json(run / f"metrics/iterations/it{k}.json")
        assert rec["feedback"]["accepted"] == 1 and rec["locked"] == 1
    assert S.read_json(run / "metrics/iterations/it1.json")["corrections_by_source"]["human"] == 1
    assert "human" not in S.read_json(run / "metrics/iterations/it2.json")["corrections_by_source"]
    assert _row(run / "data/final/sentences.sqlite", target["id"]) == ("negative", 1)
    con = sqlite3.connect(run / "data/final/sentences.sqlite")
    sources = con.execute(
        "SELECT iteration, source, new_label FROM label_history WHERE sentence_id = ?", (target["id"],)
    ).fetchall()
    con.close()
    assert sources == [(1, "human", "negative")]


def test_review_check_cli_reports_rejects_and_exit_code(tmp_path, store_db, capsys):
    fb = tmp_path / "fb"
    _write(fb / "ok.csv", "id,label\nt0,positive\n")
    base = [
        "review",
        "check",
        "--dir",
        str(fb),
        "--store",
        str(store_db),
        "--classes",
        *S.CLASSES,
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    assert main(base) == 0
    assert "1 accepted, 0 rejected" in capsys.readouterr().out
    _write(fb / "bad.csv", "id,label\nt1,great\n")
    assert main(base) == 1
    out = capsys.readouterr().out
    assert "REJECTED bad.csv:2 id=t1 label=great: unknown label 'great'" in out


def test_feedback_from_another_corpus_stops_with_one_message(tmp_path, store_db, capsys):
    fb = tmp_path / "fb"
    mine = fingerprint(store_db)
    _write(fb / "ours.csv", f"id,label,corpus\nt0,positive,{mine}\n")
    acc, rej = load_feedback(fb, S.CLASSES, store_db)
    assert list(acc["id"]) == ["t0"] and rej.empty
    _write(fb / "theirs.csv", "id,label,corpus\nt1,negative,0123456789abcdef\n")
    with pytest.raises(
        FeedbackError,
        match=rf"theirs\.csv: exported from corpus 0123456789abcdef, this "
        rf"run's corpus is {mine}",
    ):
        load_feedback(fb, S.CLASSES, store_db)
    base = [
        "review",
        "check",
        "--dir",
        str(fb),
        "--store",
        str(store_db),
        "--classes",
        *S.CLASSES,
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "theirs.csv: exported from corpus" in err
    # the fingerprint is the corpus (ids and texts), not the labels of an iteration
    other = S.write_store(tmp_path / "relabelled.sqlite", [dict(r, current_label="neutral") for r in S.corpus(10)])
    assert fingerprint(other) == mine


def test_review_check_line_numbers_ignore_bare_carriage_returns(tmp_path, store_db, capsys):
    fb = tmp_path / "fb"
    _write(
        fb / "cr.csv",
        'id,text,label\nt0,"one\rtwo\rthree",positive\nt1,plain\rtext,great\nt2,"two\nlines",bad\nt3,x,neutral\n',
    )
    acc, rej = load_feedback(fb, S.CLASSES, store_db)
    assert sorted(acc["id"]) == ["t0", "t3"] and dict(zip(acc["id"], acc["line"]))["t3"] == 6
    assert dict(zip(rej["id"], rej["line"])) == {"t1": 3, "t2": 4}
    base = [
        "review",
        "check",
        "--dir",
        str(fb),
        "--store",
        str(store_db),
        "--classes",
        *S.CLASSES,
        "--params",
        str(tmp_path / "none.yaml"),
    ]
    assert main(base) == 1
    out = capsys.readouterr().out
    assert "REJECTED cr.csv:3 id=t1" in out and "REJECTED cr.csv:4 id=t2" in out
