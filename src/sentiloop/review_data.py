"""The review app's precomputed summaries (stage review_data): what its pages read, so no page
scans the store on a rerun.

    data/review/overview.json    corpus size and splits, label distribution per iteration
                                 (original -> final) and per month where rows carry a date,
                                 corrections by source per iteration, lexicon top words, dev/test
                                 metrics per member and for the ensemble, termination, gate
    data/review/iterations.json  one record per iteration: distribution, corrections, rates, F1
    data/review/queue.parquet    the review queue: the unlocked train rows most likely to carry a
                                 wrong label, ranked, with text, original/current label, every
                                 member's and the ensemble's probabilities, the last LLM answer
                                 and rationale, and the row's label_history (JSON)
    data/review/applied.parquet  human labels the run already locked (id, label, iteration, detail)

How likely the current label is wrong (`wrong_score`): the store's `p_wrong` (the correction
rule's estimate that the original label is wrong) for rows on their original label; for changed
rows at least 1 - p_wrong, or the ensemble's 1 - P(current label) when higher; without p_wrong,
1 - P(current label). Ties go to the smaller ensemble margin (top-1 minus top-2). Rows flagged `aside` (set aside from training), queued for
relabelling in the last iteration, or changed by the loop carry that as their `reason`.

Everything is read in chunks (store and predictions in lockstep, as the correction step reads
them), so memory stays flat in corpus size; only the queue (review.queue_size rows) is held.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from sentiloop import store
from sentiloop.errors import SentiloopError
from sentiloop.jsonio import read_json, write_json
from sentiloop.layout import Layout
from sentiloop.settings import Settings

SUMMARY_VERSION = 1
DATE_COLUMNS = ("date", "created_at", "timestamp")  # a row's date, when the store carries one
OPTIONAL_COLUMNS = ("aside", "p_wrong", "source")  # written by newer correction steps
HISTORY_COLUMNS = ["iteration", "old_label", "new_label", "source", "confidence", "detail"]


class ReviewDataError(SentiloopError, RuntimeError):
    """The run's outputs cannot be summarised (missing, or not matching each other)."""


def store_columns(path: str | Path, table: str = "sentences") -> list[str]:
    con = store.connect(path, readonly=True)
    try:
        return [r[1] for r in con.execute(f"PRAGMA table_info({table})").fetchall()]
    finally:
        con.close()


def _lockstep(
    store_db: Path, predictions: Path, columns: list[str], pred_columns: list[str], chunk: int
) -> Iterator[pd.DataFrame]:
    """Every store row (rowid order) with its prediction columns; the predictions file is written
    in the store's rowid order, and each chunk's ids are checked."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(predictions)
    batches = pf.iter_batches(batch_size=chunk, columns=["id", *pred_columns])
    buf: list[pd.DataFrame] = []
    have = 0
    for part in store.iter_chunks(store_db, columns, chunk_size=chunk):
        while have < len(part):
            b = next(batches, None)
            if b is None:
                break
            f = b.to_pandas()
            buf.append(f)
            have += len(f)
        pred = pd.concat(buf, ignore_index=True) if len(buf) > 1 else buf[0]
        if len(pred) < len(part):
            raise ReviewDataError(f"{predictions} has fewer rows than {store_db}: rerun predict_final")
        head, rest = pred.iloc[: len(part)].reset_index(drop=True), pred.iloc[len(part) :]
        buf, have = ([rest] if len(rest) else []), len(rest)
        if not np.array_equal(head["id"].astype(str).to_numpy(), part["id"].astype(str).to_numpy()):
            raise ReviewDataError(f"{predictions} does not match {store_db} row for row: rerun predict_final")
        yield pd.concat([part.reset_index(drop=True), head.drop(columns="id")], axis=1)
    if have or next(batches, None) is not None:
        raise ReviewDataError(f"{predictions} has more rows than {store_db}: rerun predict_final")


def wrong_score(rows: pd.DataFrame, p_current: np.ndarray) -> np.ndarray:
    """How likely each row's current label is wrong.

    The store's `p_wrong` (newer correction steps) estimates that the *original* label is wrong:
    for a row still on its original label that is the answer; for a changed row the current
    label is wrong at least when the original was right, so 1 - p_wrong is a floor, raised to the
    ensemble's 1 - P(current label) when that is higher. Rows without p_wrong: 1 - P(current)."""
    fallback = 1.0 - np.asarray(p_current, dtype=np.float64)
    if "p_wrong" not in rows.columns:
        return fallback
    pw = pd.to_numeric(rows["p_wrong"], errors="coerce").to_numpy(dtype=np.float64)
    changed = (rows["label"] != rows["current_label"]).to_numpy()
    judged = ~np.isnan(pw)
    return np.where(judged & ~changed, pw, np.where(judged & changed, np.maximum(1.0 - pw, fallback), fallback))


def _top(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n rows with the highest score (ties: the smallest margin, then the store order)."""
    if len(frame) <= n:
        return frame
    return frame.sort_values(["score", "margin", "order"], ascending=[False, True, True], kind="mergesort").head(n)


def history_columns(store_db: Path) -> list[str]:
    """label_history's columns this store has (newer stores add `action`)."""
    have = store_columns(store_db, "label_history")
    return HISTORY_COLUMNS + [c for c in ("action",) if c in have]


def _history_for(store_db: Path, ids: set[str], chunk: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    if not ids:
        return out
    for part in store.iter_chunks(
        store_db, ["sentence_id", *history_columns(store_db)], table="label_history", chunk_size=chunk
    ):
        part = part[part["sentence_id"].astype(str).isin(ids)]
        for rec in part.to_dict("records"):
            rid = str(rec.pop("sentence_id"))
            out.setdefault(rid, []).append(
                {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
            )
    return out


def _human_applied(store_db: Path, chunk: int) -> pd.DataFrame:
    cols = ["id", "label", "iteration", "detail"]
    parts = []
    for part in store.iter_chunks(
        store_db,
        ["sentence_id", "iteration", "new_label", "detail"],
        table="label_history",
        where="source = 'human'",
        chunk_size=chunk,
    ):
        parts.append(part.rename(columns={"sentence_id": "id", "new_label": "label"})[cols])
    locked = store.read_column_values(store_db, ["id", "current_label"], where="locked = 1", chunk_size=chunk)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    frame = frame.drop_duplicates("id", keep="last")
    # a locked row whose human label equalled the loop's has no history row: it is applied too
    extra = locked[~locked["id"].isin(frame["id"])].rename(columns={"current_label": "label"})
    extra = extra.assign(iteration=None, detail="locked (label unchanged)")
    out = pd.concat([frame, extra[cols]], ignore_index=True) if len(extra) else frame
    out["id"] = out["id"].astype(str)
    out["iteration"] = pd.to_numeric(out["iteration"], errors="coerce").astype("Int64")
    return out.reset_index(drop=True)


def _llm_answers(path: Path) -> pd.DataFrame:
    cols = ["id", "llm_label", "llm_confidence", "llm_rationale"]
    if not path.exists():
        return pd.DataFrame(columns=cols)
    f = pd.read_parquet(path)
    if "llm_label" not in f.columns:
        return pd.DataFrame(columns=cols)
    if "status" in f.columns:
        f = f[f["status"].isin(["answered", "cached"])]
    f = f.rename(columns={"rationale": "llm_rationale"})
    for c in cols:
        if c not in f.columns:
            f[c] = None
    return f[cols].drop_duplicates("id", keep="last").assign(id=lambda d: d["id"].astype(str))


def _relabel_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    import pyarrow.parquet as pq

    return set(map(str, pq.read_table(path, columns=["id"]).column("id").to_pylist()))


def _read(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        raise ReviewDataError(f"{path}: unreadable ({e}); rerun the stage that writes it") from None


def _lexicon_words(s: Settings, L: Layout, n: int) -> dict[str, list[list]]:
    directory = L.models(s.loop.max_iterations, "lexicon")
    if "lexicon" not in s.members or not directory.exists():
        return {}
    from sentiloop.models.lexicon import LexiconModel

    model = LexiconModel.load(directory)
    return {c: [[w, round(float(v), 4)] for w, v in ws] for c, ws in model.top_words(n).items()}


def build(s: Settings, L: Layout) -> dict[str, Any]:
    """Write data/review/* for the run in `L`; returns the overview."""
    classes, chunk, n = s.classes, s.loop.chunk_size, s.loop.max_iterations
    final_db, preds = L.final_store, L.final_predictions
    for p in (final_db, preds):
        if not p.exists():
            raise ReviewDataError(f"{p}: missing; run `dvc repro` (or `make run`) first")
    import pyarrow.parquet as pq

    pnames = pq.ParquetFile(preds).schema_arrow.names
    ens = [f"p_ens_{c}" for c in classes]
    if any(c not in pnames for c in ens):
        raise ReviewDataError(f"{preds}: no ensemble columns {ens}; rerun predict_final")
    members = [m for m in s.members if all(f"p_{m}_{c}" in pnames for c in classes)]
    pcols = [f"p_{m}_{c}" for m in members for c in classes] + ens
    queue_columns = ["rank", "id", "text", "label", "current_label", "score", "margin", "reason", "source"]
    queue_columns += ["last_iteration", *pcols, "llm_label", "llm_confidence", "llm_rationale", "history"]
    have = store_columns(final_db)
    optional = [c for c in OPTIONAL_COLUMNS if c in have]
    date_col = next((c for c in DATE_COLUMNS if c in have), None)
    cols = ["id", "text", "label", "split", "current_label", "locked", *optional] + ([date_col] if date_col else [])
    relabel_ids = _relabel_ids(L.relabel(n))

    splits: dict[str, int] = {}
    original: dict[str, int] = {c: 0 for c in classes}
    final: dict[str, int] = {c: 0 for c in classes}
    by_month: dict[str, dict[str, int]] = {}
    queue = pd.DataFrame()
    seen = 0
    counts = {"locked": 0, "aside": 0, "changed": 0, "queued": 0, "candidates": 0}
    for part in _lockstep(final_db, preds, cols, pcols, chunk):
        part["order"] = np.arange(seen, seen + len(part))
        seen += len(part)
        for k, v in part["split"].value_counts().items():
            splits[str(k)] = splits.get(str(k), 0) + int(v)
        train = part[part["split"] == "train"]
        for col, dist in (("label", original), ("current_label", final)):
            for k, v in train[col].value_counts().items():
                dist[str(k)] = dist.get(str(k), 0) + int(v)
        if date_col:
            month = pd.to_datetime(train[date_col], errors="coerce").dt.strftime("%Y-%m")
            for (m, lab), v in train.groupby([month, train["current_label"]]).size().items():
                by_month.setdefault(str(m), {}).setdefault(str(lab), 0)
                by_month[str(m)][str(lab)] += int(v)
        counts["locked"] += int((part["locked"] == 1).sum())
        cand = train[train["locked"] != 1].copy()
        if cand.empty:
            continue
        p = cand[ens].to_numpy(dtype=np.float64)
        idx = np.array([classes.index(c) if c in classes else -1 for c in cand["current_label"]])
        p_cur = np.where(idx >= 0, p[np.arange(len(p)), np.maximum(idx, 0)], 0.0)
        top2 = np.sort(p, axis=1)[:, -2:]
        cand["margin"] = top2[:, 1] - top2[:, 0]
        cand["score"] = wrong_score(cand, p_cur)
        aside = (cand["aside"].fillna(0).astype(int) == 1) if "aside" in cand.columns else pd.Series(False, cand.index)
        queued = cand["id"].astype(str).isin(relabel_ids)
        changed = cand["label"] != cand["current_label"]
        counts["aside"] += int(aside.sum())
        counts["queued"] += int(queued.sum())
        counts["changed"] += int(changed.sum())
        counts["candidates"] += len(cand)
        reasons = np.where(
            aside, "set aside", np.where(queued, "queued for relabel", np.where(changed, "changed", "low margin"))
        )
        cand["reason"] = reasons
        queue = _top(pd.concat([queue, cand], ignore_index=True) if len(queue) else cand, s.review.queue_size)
    if seen == 0:
        raise ReviewDataError(f"{final_db}: no rows; rerun the pipeline")

    queue = queue.sort_values(["score", "margin", "order"], ascending=[False, True, True], kind="mergesort")
    queue = queue.reset_index(drop=True)
    ids = set(queue["id"].astype(str)) if len(queue) else set()
    history = _history_for(final_db, ids, chunk)
    queue["id"] = queue["id"].astype(str) if len(queue) else queue.get("id")
    if len(queue):
        queue["history"] = [json.dumps(history.get(i, []), default=str) for i in queue["id"]]
        if "source" not in queue.columns:
            queue["source"] = [(history.get(i) or [{}])[-1].get("source") or "original" for i in queue["id"]]
        queue["last_iteration"] = [max((h["iteration"] for h in history.get(i, [])), default=0) for i in queue["id"]]
        queue = queue.merge(_llm_answers(L.relabel(n)), on="id", how="left")
        queue.insert(0, "rank", np.arange(1, len(queue) + 1))
        queue = queue[queue_columns + ([date_col] if date_col else [])]
        queue["source"] = queue["source"].fillna("original").astype(str)
    else:
        queue = pd.DataFrame(columns=queue_columns)
    applied = _human_applied(final_db, chunk)

    iterations = []
    distribution = {"original": original}
    for k in range(1, n + 1):
        rec, ev = _read(L.iteration_metrics(k)), _read(L.eval(k - 1))
        distribution[f"it{k}"] = rec.get("class_distribution", {})
        iterations.append(
            {
                "k": k,
                "label_change_rate": rec.get("label_change_rate"),
                "changes": rec.get("changes"),
                "passed_through": rec.get("passed_through"),
                "locked": rec.get("locked"),
                "corrections_by_source": rec.get("corrections_by_source", {}),
                "class_distribution": rec.get("class_distribution", {}),
                "dev_macro_f1": ((ev.get("ensemble") or {}).get("dev") or {}).get("macro_f1"),
                "feedback": rec.get("feedback", {}),
            }
        )
    ev_final = _read(L.eval(n))
    metrics = {}
    for name, entry in list((ev_final.get("members") or {}).items()) + [("ensemble", ev_final.get("ensemble") or {})]:
        metrics[name] = {
            f"{split}_{m}": (entry.get(split) or {}).get(m)
            for split in ("dev", "test")
            for m in ("macro_f1", "accuracy")
        }
    summary, gate = _read(L.summary), _read(L.gate_json)
    overview = {
        "version": SUMMARY_VERSION,
        "classes": classes,
        "members": members,
        "rows": seen,
        "splits": splits,
        "distribution": distribution,
        "final_distribution": final,
        "by_month": dict(sorted(by_month.items())),
        "date_column": date_col,
        "corrections_by_source": {f"it{r['k']}": r["corrections_by_source"] for r in iterations},
        "metrics": metrics,
        "lexicon_top_words": _lexicon_words(s, L, s.report.top_words),
        "termination_reason": summary.get("termination_reason"),
        "converged_at": summary.get("converged_at"),
        "iterations_run": summary.get("iterations_run"),
        "labels_changed_total": summary.get("labels_changed_total"),
        "gate": {k: gate.get(k) for k in ("deployable", "f1", "threshold", "attempts", "alerted")} if gate else {},
        "queue": {**counts, "rows": int(len(queue)), "store_columns": optional},
        "applied_human": int(len(applied)),
        "store": str(final_db.relative_to(L.root)) if final_db.is_relative_to(L.root) else str(final_db),
    }
    out = L.review_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(queue, L.review_queue)
    _write_parquet(applied, L.review_applied)
    write_json(L.review_iterations, iterations)
    write_json(L.review_overview, overview)
    return overview


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


# --- reading (the app) --------------------------------------------------------------------------
REVIEW_COMMAND = "dvc repro review_data"


def _missing(L: Layout, path: Path) -> ReviewDataError:
    if not L.final_store.exists():
        return ReviewDataError("no run yet: run `make run` (or `dvc repro`) to run the pipeline, then reload this page")
    return ReviewDataError(f"{path} is missing: run `{REVIEW_COMMAND}` to write the review summaries")


def load_overview(L: Layout) -> dict:
    """overview.json, or a ReviewDataError saying which command writes it."""
    path = L.review_overview
    if not path.exists():
        raise _missing(L, path)
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:
        raise ReviewDataError(f"{path} is corrupt ({type(e).__name__}): rerun `dvc repro -f review_data`") from None
    if not isinstance(data, dict) or data.get("version") != SUMMARY_VERSION or "classes" not in data:
        raise ReviewDataError(f"{path} is not a review summary of this version: rerun `dvc repro -f review_data`")
    return data


def load_queue(L: Layout) -> pd.DataFrame:
    return _load_parquet(
        L,
        L.review_queue,
        ["id", "text", "label", "current_label", "score", "source", "last_iteration", "rank", "history"],
    )


def load_applied(L: Layout) -> pd.DataFrame:
    return _load_parquet(L, L.review_applied, ["id", "label"])


def load_iterations(L: Layout) -> list[dict]:
    path = L.review_iterations
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise _missing(L, path) from None
    except (OSError, ValueError) as e:
        raise ReviewDataError(f"{path} is corrupt ({type(e).__name__}): rerun `dvc repro -f review_data`") from None
    if not isinstance(data, list):
        raise ReviewDataError(f"{path} is not a list of iterations: rerun `dvc repro -f review_data`")
    return data


def _load_parquet(L: Layout, path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        raise _missing(L, path)
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise ReviewDataError(f"{path} is corrupt ({type(e).__name__}): rerun `dvc repro -f review_data`") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReviewDataError(f"{path} lacks columns {missing}: rerun `dvc repro -f review_data`")
    return frame


def _corrupt_store(L: Layout, e: Exception) -> ReviewDataError:
    return ReviewDataError(f"{L.final_store}: unreadable ({e}); restore it with `dvc checkout` or rerun `dvc repro`")


def row_details(L: Layout, rid: str) -> dict | None:
    """One row by id from the final store (primary key), its predictions and its history."""
    con = store.connect(L.final_store, readonly=True)
    try:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM sentences WHERE id = ?", (str(rid),)).fetchone()
        if row is None:
            return None
        cols = [r[1] for r in con.execute("PRAGMA table_info(label_history)").fetchall()]
        cols = HISTORY_COLUMNS + [c for c in ("action",) if c in cols]
        hist = con.execute(
            f"SELECT {', '.join(cols)} FROM label_history WHERE sentence_id = ? ORDER BY rowid", (str(rid),)
        ).fetchall()
    except sqlite3.DatabaseError as e:
        raise _corrupt_store(L, e) from None
    finally:
        con.close()
    import pyarrow.parquet as pq

    preds = {}
    if L.final_predictions.exists():
        t = pq.read_table(L.final_predictions, filters=[("id", "=", str(rid))])
        if t.num_rows:
            preds = {
                k: v[0] for k, v in t.to_pydict().items() if k.startswith("p_") or k in ("ens_label", "confidence")
            }
    return {"row": dict(row), "history": [dict(h) for h in hist], "predictions": preds}


def search_text(L: Layout, query: str, limit: int = 50) -> pd.DataFrame:
    """Rows whose text contains `query` (case-insensitive for ASCII), at most `limit`."""
    con = store.connect(L.final_store, readonly=True)
    try:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = con.execute(
            "SELECT id, text, label, current_label, split, locked FROM sentences WHERE text LIKE ? ESCAPE '\\' LIMIT ?",
            (f"%{escaped}%", int(limit)),
        ).fetchall()
    except sqlite3.DatabaseError as e:
        raise _corrupt_store(L, e) from None
    finally:
        con.close()
    return pd.DataFrame(rows, columns=["id", "text", "label", "current_label", "split", "locked"])
