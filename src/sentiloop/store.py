"""The SQLite `sentences` store: one file per pipeline step, read in chunks.

DVC outputs are immutable and a path cannot be both a stage's dep and its out, so a step never
updates the store it read: it writes a new file (copy, then update inside one transaction, then
an atomic rename). Every read goes through `iter_chunks`, so memory stays flat in corpus size.

Schema of `sentences`:
  id TEXT PRIMARY KEY, text TEXT, label TEXT (the original label, never changed),
  split TEXT (train/dev/test), current_label TEXT (the refined label), locked INTEGER
  (1 = a human label: no automatic step may change it; 2 = settled by an annotator (LLM): the
  ensemble no longer judges it, a human still may), aside INTEGER (1 = suspect: not trained
  on, queued for review, judged again next iteration), p_wrong REAL (the correction rule's
  estimate that the original label is wrong; NULL until judged).
`label_history`: every change with its provenance.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pandas as pd

from sentiloop.errors import SentiloopError

SENTENCE_COLUMNS = ("id", "text", "label", "split", "current_label", "locked", "aside", "p_wrong")
HISTORY_COLUMNS = ("sentence_id", "iteration", "old_label", "new_label", "source", "confidence", "detail", "action")

CREATE_SENTENCES = """
CREATE TABLE IF NOT EXISTS sentences (
  id TEXT PRIMARY KEY,
  text TEXT NOT NULL,
  label TEXT NOT NULL,
  split TEXT,
  current_label TEXT,
  locked INTEGER NOT NULL DEFAULT 0,
  aside INTEGER NOT NULL DEFAULT 0,
  p_wrong REAL
)"""
CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS label_history (
  sentence_id TEXT NOT NULL,
  iteration INTEGER NOT NULL,
  old_label TEXT,
  new_label TEXT NOT NULL,
  source TEXT NOT NULL,
  confidence REAL,
  detail TEXT,
  action TEXT
)"""


class StoreError(SentiloopError, RuntimeError):
    pass


def unreadable(path: str | Path, e: BaseException) -> StoreError:
    return StoreError(
        f"{path}: not a readable SQLite database ({e}): truncated or corrupted; "
        "rerun the stage that writes it (dvc repro --force <stage>)"
    )


def check_readable(con: sqlite3.Connection, path: str | Path) -> None:
    """Read the header and the page count (SQLite compares it with the file's size): a file
    that is not a database or was cut short fails here, naming the file, not in a later query."""
    try:
        con.execute("PRAGMA page_count").fetchone()
        con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as e:
        con.close()
        raise unreadable(path, e) from None


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    path = Path(path)
    if readonly:
        if not path.exists():
            raise StoreError(f"{path}: no such database")
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        check_readable(con, path)
    else:
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
    return con


@contextmanager
def atomic_db(path: str | Path, *, copy_from: str | Path | None = None) -> Iterator[sqlite3.Connection]:
    """Yield a connection to a temporary database that replaces `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if copy_from is not None:
            connect(copy_from, readonly=True).close()  # a truncated source names itself
            shutil.copyfile(copy_from, tmp)
        else:
            os.unlink(tmp)
        con = connect(tmp)
        try:
            yield con
            con.commit()
        finally:
            con.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def create_sentences(con: sqlite3.Connection) -> None:
    con.execute(CREATE_SENTENCES)
    con.execute(CREATE_HISTORY)


def iter_chunks(
    path: str | Path,
    columns: Sequence[str] = ("id", "text", "current_label"),
    *,
    where: str | None = None,
    params: Sequence = (),
    chunk_size: int = 5000,
    table: str = "sentences",
    order_by: str = "rowid",
) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most `chunk_size` rows: the only way the pipeline reads a store."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    con = connect(path, readonly=True)
    try:
        cols = ", ".join(columns)
        sql = f"SELECT {cols} FROM {table}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        try:
            cur = con.execute(sql, tuple(params))
            rows = cur.fetchmany(chunk_size)
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:  # no such table/column: a bug, not the file
                raise
            raise unreadable(path, e) from None
        while rows:
            yield pd.DataFrame.from_records(rows, columns=list(columns))
            try:
                rows = cur.fetchmany(chunk_size)
            except sqlite3.DatabaseError as e:
                if type(e) is not sqlite3.DatabaseError:
                    raise
                raise unreadable(path, e) from None
    finally:
        con.close()


def read_column_values(
    path: str | Path, columns: Sequence[str], *, where: str | None = None, params: Sequence = (), chunk_size: int = 5000
) -> pd.DataFrame:
    """Concatenate chunks of a few columns (ids, labels): for the small per-row arrays only."""
    parts = list(iter_chunks(path, columns, where=where, params=params, chunk_size=chunk_size))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.concat(parts, ignore_index=True)


def count(path: str | Path, where: str | None = None, params: Sequence = (), table: str = "sentences") -> int:
    con = connect(path, readonly=True)
    try:
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(con.execute(sql, tuple(params)).fetchone()[0])
    finally:
        con.close()


def label_counts(path: str | Path, column: str = "current_label", split: str | None = None) -> dict[str, int]:
    con = connect(path, readonly=True)
    try:
        sql = f"SELECT {column}, COUNT(*) FROM sentences"
        args: tuple = ()
        if split:
            sql += " WHERE split = ?"
            args = (split,)
        sql += f" GROUP BY {column} ORDER BY {column}"
        return {str(k): int(v) for k, v in con.execute(sql, args).fetchall()}
    finally:
        con.close()


def fingerprint(path: str | Path) -> str:
    """The corpus a store holds, as 16 hex digits: sha256 over its ids and texts in row order
    (labels, splits and history excluded, so every iteration's store of one run agrees)."""
    h = hashlib.sha256()
    for chunk in iter_chunks(path, ("id", "text"), chunk_size=20_000):
        for rid, text in zip(chunk["id"], chunk["text"]):
            h.update(f"{rid}\x1f{text}\x1e".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def write_history(con: sqlite3.Connection, rows: Iterable[tuple]) -> int:
    """Append history rows (sentence_id, iteration, old_label, new_label, source, confidence,
    detail[, action]). `action` says what happened: relabel (a label changed), restore (an earlier
    correction undone), aside / unaside (set aside or brought back; the label is unchanged)."""
    con.execute(CREATE_HISTORY)
    cur = con.executemany(
        "INSERT INTO label_history (sentence_id, iteration, old_label, new_label, source, "
        "confidence, detail, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (tuple(r) + (None,) * (8 - len(r)) if len(r) < 8 else tuple(r) for r in rows),
    )
    return cur.rowcount


def settle(con: sqlite3.Connection, ids: Iterable[str]) -> int:
    """Mark free train rows as settled by an annotator (locked = 2)."""
    cur = con.executemany(
        "UPDATE sentences SET locked = 2, aside = 0 WHERE id = ? AND locked = 0 AND split = 'train'",
        ((str(i),) for i in ids),
    )
    return cur.rowcount


def set_judgement(con: sqlite3.Connection, ids: Sequence[str], aside: Sequence[int], p_wrong: Sequence[float]) -> int:
    """Record the correction rule's view of free train rows: aside (excluded from training,
    queued for review) and the estimated probability that the original label is wrong."""
    cur = con.executemany(
        "UPDATE sentences SET aside = ?, p_wrong = ? WHERE id = ? AND locked = 0 AND split = 'train'",
        ((int(a), float(p), str(i)) for i, a, p in zip(ids, aside, p_wrong)),
    )
    return cur.rowcount


def apply_label_changes(con: sqlite3.Connection, changes: pd.DataFrame) -> int:
    """Set current_label for (id, new_label) rows; never touches locked rows or the test split."""
    if changes.empty:
        return 0
    cur = con.executemany(
        "UPDATE sentences SET current_label = ? WHERE id = ? AND locked = 0 AND split = 'train'",
        list(zip(changes["new_label"].astype(str), changes["id"].astype(str))),
    )
    return cur.rowcount
