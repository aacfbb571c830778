"""The store is read in chunks and written atomically."""

from __future__ import annotations

import pytest

from sentiloop import store


def make(path, n):
    with store.atomic_db(path) as con:
        store.create_sentences(con)
        con.executemany(
            "INSERT INTO sentences (id, text, label, split, current_label) VALUES (?, ?, ?, 'train', ?)",
            [(str(i), f"t{i}", "a", "a") for i in range(n)],
        )


def test_chunked_reads_never_exceed_chunk_size(tmp_path):
    make(tmp_path / "s.sqlite", 1003)
    sizes = [len(c) for c in store.iter_chunks(tmp_path / "s.sqlite", ["id"], chunk_size=100)]
    assert max(sizes) == 100 and sum(sizes) == 1003 and len(sizes) == 11


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    make(tmp_path / "s.sqlite", 5)
    with pytest.raises(RuntimeError):
        with store.atomic_db(tmp_path / "s.sqlite") as con:
            store.create_sentences(con)
            raise RuntimeError("boom")
    assert store.count(tmp_path / "s.sqlite") == 5
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_label_changes_never_touch_locked_or_test_rows(tmp_path):
    import pandas as pd

    make(tmp_path / "s.sqlite", 3)
    con = store.connect(tmp_path / "s.sqlite")
    con.execute("UPDATE sentences SET locked = 1 WHERE id = '0'")
    con.execute("UPDATE sentences SET split = 'test' WHERE id = '1'")
    n = store.apply_label_changes(con, pd.DataFrame({"id": ["0", "1", "2"], "new_label": ["b", "b", "b"]}))
    con.commit()
    con.close()
    assert n == 1 and store.label_counts(tmp_path / "s.sqlite") == {"a": 2, "b": 1}


def test_readonly_open_of_missing_db_is_clear(tmp_path):
    with pytest.raises(store.StoreError, match="no such database"):
        list(store.iter_chunks(tmp_path / "missing.sqlite", ["id"]))
