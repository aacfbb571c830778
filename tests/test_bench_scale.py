"""Scale bench parts: seeded corpus samples, the report, and (slow) a two-size run on NSMC."""

import gzip
import json

import pytest

from sentiloop.benchmark.data import find_nsmc
from sentiloop.benchmark.scale import render_section, run_scale, write_sample


def _raw(path, n):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("id\tmovie_id\tdocument\trating\n")
        for i in range(n):
            fh.write(f"{i}\t1\t리뷰 {i}\t{1 + i % 10}\n")
    return path


def test_write_sample_is_seeded_and_keeps_the_header(tmp_path):
    src = _raw(tmp_path / "raw.tsv.gz", 1000)
    a, b, c = (tmp_path / f"{x}.tsv.gz" for x in "abc")
    assert write_sample(src, a, 100, seed=1) == 100
    write_sample(src, b, 100, seed=1, total=1000)
    write_sample(src, c, 100, seed=2)
    la, lb, lc = (gzip.open(p, "rt", encoding="utf-8").read().splitlines() for p in (a, b, c))
    assert la[0] == "id\tmovie_id\tdocument\trating"
    assert len(la) == 101 and la == lb and la != lc
    ids = [int(line.split("\t")[0]) for line in la[1:]]
    assert ids == sorted(ids) and len(set(ids)) == 100  # source order, no duplicates


def _stage(peak):
    return {"wall_s": 1.0, "seconds": 0.5, "peak_rss_mb": peak, "info": {}}


def test_render_section_reports_ratio_and_targets():
    summary = {
        "members": ["lexicon"],
        "machine": "m",
        "started": "t",
        "load_before": [1, 1, 1],
        "load_after": [1, 1, 1],
        "chunk_size": 5000,
        "token_cache": True,
        "fit": {"lexicon": {"n_train": 10, "seconds": 1.0}},
        "throughput": {
            "n": 10,
            "kiwi_tokenize_per_s": 1000.0,
            "members": {"lexicon": {"score_tokens_per_s": 80000.0, "predict_cached_per_s": 30000.0}},
        },
        "sizes": {
            "100": {
                "rows": 100,
                "peak_rss_mb": 200.0,
                "stages": {s: _stage(200.0) for s in ("ingest", "split", "predict", "relabel", "correct")},
            },
            "1000": {
                "rows": 1000,
                "peak_rss_mb": 300.0,
                "stages": {s: _stage(300.0) for s in ("ingest", "split", "predict", "relabel", "correct")},
            },
        },
    }
    text = render_section(summary, "python bench/scale.py")
    assert "**1.50** (target <= 1.3)" in text
    assert "**300 MiB** (target <= 1,536 MiB)" in text
    assert "80,000/s" in text and "**30,000/s**" in text


@pytest.mark.slow
@pytest.mark.skipif(find_nsmc() is None, reason="NSMC not found beside the repository")
def test_two_size_run_measures_every_stage(tmp_path):
    summary = run_scale(
        sizes=[300, 3000],
        members=["lexicon"],
        workdir=tmp_path,
        train_rows=2000,
        throughput_rows=500,
        log=lambda *_: None,
        timeout=300,
    )
    for size in ("300", "3000"):
        rec = summary["sizes"][size]
        assert rec["rows"] == int(size)
        assert set(rec["stages"]) == {"ingest", "split", "predict", "judge", "relabel", "correct"}
        assert all(s["peak_rss_mb"] > 50 for s in rec["stages"].values())
    assert json.loads((tmp_path / "scale.json").read_text())["members"] == ["lexicon"]
    assert summary["throughput"]["members"]["lexicon"]["predict_cached_per_s"] > 0
