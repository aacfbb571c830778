"""Human feedback (seed 003): export the rows the ensemble is least sure of, read reviewed files
back as locked human labels.

Round trip:
  1. `sentiloop review export` writes the N train rows with the smallest ensemble margin (top
     probability minus the runner-up) from an iteration's predictions, with their text, current
     label and probabilities, and an empty `label` column for the reviewer.
  2. The reviewer fills `label` (and optionally `reviewer`), and drops the file into
     data/feedback/ (a DVC-tracked input directory: a change reruns every correct@itK).
  3. `load_feedback` validates every file; the correct stage locks the accepted rows
     (locked=1, source "human"), which no automatic step may change afterwards.

Validation is all-or-nothing per file for structural problems (unreadable, not UTF-8, missing
`id`/`label` columns, ragged rows): such a file is rejected whole with a message, never half
applied. Row problems (unknown id, unknown label, a held-out split, the same id given different
labels) reject that row (all rows of that id, for conflicts) with a reason. Rows whose `label` is
left empty were not reviewed and are skipped, not rejected.
"""

from __future__ import annotations

import heapq
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from sentiloop.delimited import Records, text_lines
from sentiloop.errors import SentiloopError
from sentiloop.store import fingerprint, iter_chunks, write_history

FEEDBACK_SUFFIXES = (".csv", ".tsv")
IGNORED_NAMES = {"README.md", ".gitkeep", ".gitignore"}
REJECT_COLUMNS = ["file", "line", "id", "label", "reason"]
ACCEPT_COLUMNS = ["id", "label", "reviewer", "file", "line"]
HUMAN_SOURCE = "human"
CORPUS_COLUMN = "corpus"  # the exported corpus's fingerprint (store.fingerprint), in every row


class FeedbackError(SentiloopError, ValueError):
    """A feedback file that cannot be used at all."""


# --- export ------------------------------------------------------------------------------


def _ens_columns(columns: Sequence[str], classes: Sequence[str]) -> list[str]:
    cols = [f"p_ens_{c}" for c in classes]
    missing = [c for c in cols if c not in columns]
    if missing:
        raise FeedbackError(
            f"predictions have no ensemble columns {missing}; expected p_ens_<class> for classes {list(classes)}"
        )
    return cols


def most_uncertain(
    predictions: str | Path,
    classes: Sequence[str],
    n: int,
    *,
    split: str = "train",
    exclude: Iterable[str] = (),
    batch_size: int = 50_000,
) -> pd.DataFrame:
    """The `n` rows of `split` with the smallest top-1 minus top-2 ensemble margin, streamed."""
    import pyarrow.parquet as pq

    if n < 1:
        raise FeedbackError(f"review export: -n must be >= 1, got {n}")
    pf = pq.ParquetFile(predictions)
    names = pf.schema_arrow.names
    pcols = _ens_columns(names, classes)
    read = ["id"] + (["split"] if "split" in names else []) + pcols
    exclude = set(map(str, exclude))
    heap: list[tuple[float, int, dict[str, Any]]] = []  # max-heap on margin via negation
    seq = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=read):
        df = batch.to_pandas()
        if "split" in df.columns:
            df = df[df["split"] == split]
        df = df[~df["id"].astype(str).isin(exclude)]
        if df.empty:
            continue
        p = df[pcols].to_numpy(dtype=np.float64)
        top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.hstack([np.zeros((len(p), 1)), p])
        margin = top2[:, 1] - top2[:, 0]
        for i in np.argsort(margin, kind="stable")[:n]:
            row = {
                "id": str(df["id"].iloc[i]),
                "margin": float(margin[i]),
                "confidence": float(top2[i, 1]),
                **{c: float(p[i, j]) for j, c in enumerate(pcols)},
            }
            item = (-row["margin"], -seq, row)
            seq += 1
            if len(heap) < n:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    rows = sorted((r for _, _, r in heap), key=lambda r: r["margin"])
    return pd.DataFrame(rows, columns=["id", "margin", "confidence", *pcols])


def _store_rows(store: str | Path, ids: Sequence[str], columns: Sequence[str], batch: int = 500) -> pd.DataFrame:
    parts = []
    ids = list(dict.fromkeys(map(str, ids)))
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        marks = ",".join("?" * len(part))
        parts.extend(iter_chunks(store, columns, where=f"id IN ({marks})", params=part, chunk_size=batch))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.concat(parts, ignore_index=True)


def export_review(
    predictions: str | Path,
    store: str | Path,
    out: str | Path,
    *,
    classes: Sequence[str],
    n: int = 200,
    split: str = "train",
) -> pd.DataFrame:
    """Write the review file for the `n` most uncertain unlocked rows; returns what was written.

    Each row carries its original label (as ingested), its current label (after the loop) and
    the proposed one (the ensemble's most probable class)."""
    locked = {str(df_id) for chunk in iter_chunks(store, ("id",), where="locked = 1") for df_id in chunk["id"]}
    top = most_uncertain(predictions, classes, n, split=split, exclude=locked)
    info = _store_rows(store, top["id"].tolist(), ("id", "text", "label", "current_label"))
    merged = top.merge(info.rename(columns={"label": "original_label"}), on="id", how="inner")
    pcols = [f"p_ens_{c}" for c in classes]
    merged["proposed_label"] = [classes[i] for i in merged[pcols].to_numpy().argmax(axis=1)] if len(merged) else []
    review = merged[
        ["id", "text", "original_label", "current_label", "proposed_label", "confidence", "margin", *pcols]
    ].copy()
    review[pcols + ["confidence", "margin"]] = review[pcols + ["confidence", "margin"]].round(4)
    review["label"] = ""  # the reviewer's answer: one of the classes
    review["reviewer"] = ""  # optional: who reviewed it
    review[CORPUS_COLUMN] = fingerprint(store)  # which corpus the ids belong to (checked on import)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    review.to_csv(out, index=False)
    return review


# --- Label Studio ----------------------------------------------------------------------------
LS_FROM_NAME = "sentiment"
LS_TO_NAME = "text"


def label_studio_config(classes: Sequence[str]) -> str:
    """The labeling interface the tasks are written for (paste it into the project's settings)."""
    from xml.sax.saxutils import quoteattr

    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        f'<View>\n  <Text name="{LS_TO_NAME}" value="$text"/>\n'
        f'  <Choices name="{LS_FROM_NAME}" toName="{LS_TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def write_label_studio(review: pd.DataFrame, out: str | Path, classes: Sequence[str]) -> Path:
    """Label Studio tasks for an exported review (JSON import): the row's text and labels as data,
    the proposed label as a pre-annotation (a prediction with the ensemble's confidence)."""
    import json

    tasks = []
    for r in review.itertuples(index=False):
        tasks.append(
            {
                "data": {
                    "text": r.text,
                    "sentiloop_id": str(r.id),
                    "original_label": r.original_label,
                    "current_label": r.current_label,
                    "proposed_label": r.proposed_label,
                },
                "predictions": [
                    {
                        "model_version": "sentiloop-ensemble",
                        "score": float(r.confidence),
                        "result": [
                            {
                                "from_name": LS_FROM_NAME,
                                "to_name": LS_TO_NAME,
                                "type": "choices",
                                "value": {"choices": [r.proposed_label]},
                            }
                        ],
                    }
                ],
            }
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    out.with_name(out.stem + ".config.xml").write_text(label_studio_config(classes), encoding="utf-8")
    return out


def read_label_studio(path: str | Path) -> pd.DataFrame:
    """A Label Studio JSON export of those tasks as feedback rows (id, label, reviewer): per task
    the last annotation that was not cancelled; tasks nobody annotated are left out. Labels are
    checked later, by load_feedback, like any feedback file's."""
    import json

    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FeedbackError(f"{path}: not a Label Studio JSON export ({type(e).__name__}: {e})") from None
    if not isinstance(tasks, list):
        raise FeedbackError(f"{path}: a Label Studio JSON export is a list of tasks; got {type(tasks).__name__}")
    rows = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise FeedbackError(f"{path}: task {i} has no 'data' object; export with the JSON format")
        rid = task["data"].get("sentiloop_id")
        if rid in (None, ""):
            raise FeedbackError(
                f"{path}: task {i} has no data.sentiloop_id; import tasks written by "
                "`sentiloop review export --label-studio`"
            )
        done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not done:
            continue
        ann = done[-1]
        choices = [
            c
            for res in ann.get("result") or []
            if isinstance(res, dict) and res.get("from_name") == LS_FROM_NAME
            for c in (res.get("value") or {}).get("choices") or []
        ]
        if len(choices) != 1:
            raise FeedbackError(f"{path}: task {i} (id {rid}): expected one '{LS_FROM_NAME}' choice, got {choices}")
        who = ann.get("completed_by")
        who = who.get("email") or who.get("id") if isinstance(who, dict) else who
        rows.append(
            {
                "id": str(rid),
                "label": str(choices[0]),
                "reviewer": f"labelstudio:{who}" if who is not None else "labelstudio",
            }
        )
    return pd.DataFrame(rows, columns=["id", "label", "reviewer"])


# --- import ------------------------------------------------------------------------------


def _read_file(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Parse one feedback file strictly; raises FeedbackError on any structural problem.
    Line numbers are physical lines as an editor shows them (a bare CR inside a text is text)."""
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FeedbackError(f"not valid UTF-8 (byte {e.start}); save it as UTF-8 CSV") from None
    except OSError as e:
        raise FeedbackError(f"unreadable: {e}") from None
    if not raw.strip():
        raise FeedbackError("empty file")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    records = Records(text_lines(raw), delimiter, quoting=delimiter == ",")
    first = next(records, None)
    if first is None or first[0] is None:
        raise FeedbackError(
            f"not a valid {'TSV' if delimiter == chr(9) else 'CSV'} file: "
            f"line {records.line_no}: the header line is malformed"
        )
    header = [h.strip() for h in first[0]]
    records.ncols = len(header)
    rows = []
    for record, _, _ in records:
        line = records.line_no
        if record is None:
            raise FeedbackError(
                f"line {line}: a quote that is never closed, or text after a "
                "closing quote: fix the quoting or the delimiter"
            )
        if all(not f.strip() for f in record):
            continue
        if len(record) != len(header):
            raise FeedbackError(
                f"line {line} has {len(record)} fields, the header has {len(header)}: fix the quoting or the delimiter"
            )
        rows.append((line, dict(zip(header, (f.strip() for f in record)))))
    missing = [c for c in ("id", "label") if c not in header]
    if missing:
        raise FeedbackError(f"missing required column(s) {missing}; the header is {header}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise FeedbackError(f"duplicate column(s) {dupes} in the header")
    return header, rows


def feedback_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.exists():
        return []
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES and not p.name.startswith(".")
    )


def load_feedback(
    directory: str | Path, classes: Sequence[str], store_path: str | Path, *, allowed_splits: Sequence[str] = ("train",)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every reviewed file under `directory`.

    Returns (accepted: id, label, reviewer, file, line; one row per id), (rejects: file, line,
    id, label, reason). The accepted frame has attribute `attrs["unreviewed"]` (rows with an
    empty label) and `attrs["duplicates"]` (identical repeats folded into one).
    """
    directory = Path(directory)
    by_lower = {c.lower(): c for c in classes}
    rejects: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    unreviewed = 0
    corpus: str | None = None  # this run's fingerprint, computed once a file carries one
    for path in feedback_files(directory):
        name = path.relative_to(directory).as_posix()
        if path.suffix.lower() not in FEEDBACK_SUFFIXES:
            rejects.append(
                {
                    "file": name,
                    "line": 0,
                    "id": None,
                    "label": None,
                    "reason": f"unsupported file type {path.suffix or '(none)'}: use {' or '.join(FEEDBACK_SUFFIXES)}",
                }
            )
            continue
        try:
            _, rows = _read_file(path)
        except FeedbackError as e:
            rejects.append({"file": name, "line": 0, "id": None, "label": None, "reason": f"whole file rejected: {e}"})
            continue
        marks = {row.get(CORPUS_COLUMN, "") for _, row in rows} - {""}
        if marks:
            corpus = corpus or fingerprint(store_path)
            if marks != {corpus}:
                raise FeedbackError(
                    f"{path}: exported from corpus {', '.join(sorted(marks))}, this run's corpus is "
                    f"{corpus} ({CORPUS_COLUMN} column): its ids would land on unrelated rows; move "
                    f"it out of {directory} or export a review from this corpus"
                )
        for line, row in rows:
            rid, label = row.get("id", ""), row.get("label", "")
            if not label:
                unreviewed += 1
                continue
            base = {"file": name, "line": line, "id": rid or None, "label": label}
            if not rid:
                rejects.append({**base, "reason": "empty id"})
            elif label.lower() not in by_lower:
                rejects.append({**base, "reason": f"unknown label {label!r}; classes are {list(classes)}"})
            else:
                candidates.append({**base, "label": by_lower[label.lower()], "reviewer": row.get("reviewer") or None})

    # ids must exist, in a split a human label may touch
    splits: dict[str, str] = {}
    if candidates:
        known = _store_rows(store_path, [c["id"] for c in candidates], ("id", "split"))
        splits = dict(zip(known["id"].astype(str), known["split"].astype(str)))
    checked = []
    for c in candidates:
        split = splits.get(c["id"])
        if split is None:
            rejects.append({**_reject_base(c), "reason": "unknown id: not in the store"})
        elif split not in allowed_splits:
            rejects.append(
                {
                    **_reject_base(c),
                    "reason": f"id is in the {split!r} split; human "
                    f"labels apply to {list(allowed_splits)} only (the test split is "
                    "held out and never relabelled)",
                }
            )
        else:
            checked.append(c)

    # the same id twice: identical labels fold into one, different labels reject them all
    by_id: dict[str, list[dict[str, Any]]] = {}
    for c in checked:
        by_id.setdefault(c["id"], []).append(c)
    accepted, duplicates = [], 0
    for rid, group in by_id.items():
        labels = sorted({g["label"] for g in group})
        if len(labels) > 1:
            where = ", ".join(f"{g['file']}:{g['line']}={g['label']}" for g in group)
            for g in group:
                rejects.append({**_reject_base(g), "reason": f"conflicting labels for this id ({where})"})
            continue
        duplicates += len(group) - 1
        first = group[-1]  # the last file in sorted order wins for the reviewer name
        accepted.append({k: first[k] for k in ACCEPT_COLUMNS})
    acc = pd.DataFrame(accepted, columns=ACCEPT_COLUMNS)
    rej = pd.DataFrame(rejects, columns=REJECT_COLUMNS, dtype=object)  # None stays None
    acc.attrs.update(unreviewed=unreviewed, duplicates=duplicates, files=len(feedback_files(directory)))
    return acc, rej


def _reject_base(c: dict[str, Any]) -> dict[str, Any]:
    return {"file": c["file"], "line": c["line"], "id": c["id"], "label": c["label"]}


def feedback_stats(accepted: pd.DataFrame, rejects: pd.DataFrame) -> dict[str, Any]:
    """Counts for the metrics: how much feedback there was and why some was refused."""
    reasons: dict[str, int] = {}
    for r in rejects["reason"] if len(rejects) else []:
        key = r.split(":")[0] if not r.startswith("whole file") else "whole file rejected"
        key = "conflicting labels" if key.startswith("conflicting labels") else key
        reasons[key] = reasons.get(key, 0) + 1
    return {
        "files": int(accepted.attrs.get("files", 0)),
        "accepted": int(len(accepted)),
        "rejected": int(len(rejects)),
        "unreviewed": int(accepted.attrs.get("unreviewed", 0)),
        "duplicates": int(accepted.attrs.get("duplicates", 0)),
        "rejected_files": int(
            sum(1 for r in (rejects["reason"] if len(rejects) else []) if r.startswith(("whole file", "unsupported")))
        ),
        "reject_reasons": reasons,
    }


def apply_feedback(con: sqlite3.Connection, accepted: pd.DataFrame, iteration: int) -> int:
    """Lock the accepted human labels in an open store connection; returns labels changed.

    Every accepted row ends locked=1 with current_label = the human label; a history row with
    source "human" is written only where the label actually changes, so re-applying the same
    feedback every iteration is idempotent."""
    if accepted.empty:
        return 0
    changed = []
    for start in range(0, len(accepted), 500):
        part = accepted.iloc[start : start + 500]
        marks = ",".join("?" * len(part))
        current = dict(
            con.execute(
                f"SELECT id, current_label FROM sentences WHERE id IN ({marks})", list(part["id"].astype(str))
            ).fetchall()
        )
        for rid, label, reviewer, file in zip(part["id"].astype(str), part["label"], part["reviewer"], part["file"]):
            if rid in current and current[rid] != label:
                changed.append(
                    (rid, iteration, current[rid], label, HUMAN_SOURCE, 1.0, f"reviewer={reviewer or ''};file={file}")
                )
    con.executemany(
        "UPDATE sentences SET current_label = ?, locked = 1, aside = 0 WHERE id = ?",
        list(zip(accepted["label"].astype(str), accepted["id"].astype(str))),
    )
    if changed:
        write_history(con, changed)
    return len(changed)
