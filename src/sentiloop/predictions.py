"""predictions.parquet: its columns, and reading it alongside the store.

One row per store row, in the store's rowid order: id, split, p_<member>_<class> for every
member, p_ens_<class>, ens_label, confidence, agreement, variance (written by steps.predict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from sentiloop import store
from sentiloop.errors import SentiloopError

PRED_COLUMNS = ["id", "ens_label", "confidence", "agreement"]


class PredictionsMismatch(SentiloopError, RuntimeError):
    """A predictions file that does not line up with its store, row for row."""


def prob_columns(name: str, classes: list[str]) -> list[str]:
    """The probability columns of a member (or "ens") over the ordered classes."""
    return [f"p_{name}_{c}" for c in classes]


def read_predictions(path: Path, columns: list[str], split: str | None = "train") -> pd.DataFrame:
    import pyarrow.parquet as pq

    frame = pq.read_table(path, columns=list(dict.fromkeys(columns + ["split"]))).to_pandas()
    if split is not None:
        frame = frame[frame["split"] == split]
    return frame[columns].reset_index(drop=True)


def train_chunks(store_db: Path, predictions: Path, columns: list[str], chunk: int) -> Iterator[pd.DataFrame]:
    """The store's train rows (`columns`) with their predictions (ens_label, confidence,
    agreement), chunk by chunk, reading the store and the predictions file in lockstep.

    The predict step writes the predictions in the store's rowid order, so the k-th train row of
    the store is the k-th train row of the file; each chunk checks its ids, and a file that does
    not match the store row for row is an error (rerun predict on this store), never a silent merge."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(predictions)
    batches = pf.iter_batches(batch_size=chunk, columns=PRED_COLUMNS + ["split"])
    buf: list[pd.DataFrame] = []
    have = 0

    def take(n: int) -> pd.DataFrame:
        nonlocal buf, have
        while have < n:
            b = next(batches, None)
            if b is None:
                break
            f = b.to_pandas()
            f = f[f["split"] == "train"]
            if len(f):
                buf.append(f[PRED_COLUMNS])
                have += len(f)
        if not buf:
            return pd.DataFrame(columns=PRED_COLUMNS)
        allf = pd.concat(buf, ignore_index=True) if len(buf) > 1 else buf[0].reset_index(drop=True)
        out, rest = allf.iloc[:n].reset_index(drop=True), allf.iloc[n:]
        buf, have = ([rest] if len(rest) else []), len(rest)
        return out

    cols = list(dict.fromkeys(["id"] + list(columns)))
    for rows in store.iter_chunks(store_db, cols, where="split = 'train'", chunk_size=chunk):
        pred = take(len(rows))
        if len(pred) < len(rows):
            missing = rows["id"].iloc[len(pred)]
            raise PredictionsMismatch(f"{predictions}: no prediction for train id {missing}")
        same = rows["id"].astype(str).to_numpy() == pred["id"].astype(str).to_numpy()
        if not same.all():
            i = int(np.argmin(same))
            raise PredictionsMismatch(
                f"{predictions} does not match {store_db} row for row: train row id {rows['id'].iloc[i]} "
                f"has the prediction of id {pred['id'].iloc[i]}; rerun predict on this store"
            )
        yield pd.concat([rows.reset_index(drop=True), pred[PRED_COLUMNS[1:]]], axis=1)
    extra = take(1)
    if len(extra):
        raise PredictionsMismatch(f"{predictions}: train id {extra['id'].iloc[0]} is not a train row of {store_db}")
