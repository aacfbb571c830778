"""Stage analyze@it<k>: the bias report of iteration k (metrics/analysis/it<k>.md + .json) from
its outputs (store after correction, predictions, LLM answers and usage); with an LLM provider
configured, its review of edge cases and misclassified samples is appended."""

from __future__ import annotations

import pandas as pd

from sentiloop import store
from sentiloop.analysis.report import bias_report
from sentiloop.jsonio import read_json
from sentiloop.layout import Layout
from sentiloop.relabel import cache_dir_for
from sentiloop.settings import Settings


def run(s: Settings, L: Layout, k: int) -> dict:
    import pyarrow.parquet as pq

    store_db, chunk = L.store(k), s.loop.chunk_size
    labels = store.read_column_values(
        store_db, ["id", "label", "current_label", "split"], where="split = 'train'", chunk_size=chunk
    )
    hist = list(
        store.iter_chunks(
            store_db,
            ["sentence_id", "old_label", "new_label", "source"],
            table="label_history",
            params=(int(k),),
            where="iteration = ? AND (old_label IS NULL OR old_label != new_label)",
            chunk_size=chunk,
        )
    )
    changes = pd.concat(hist, ignore_index=True).rename(columns={"sentence_id": "id"}) if hist else None
    preds = pq.read_table(L.predictions(k), filters=[("split", "=", "train")]).to_pandas()
    answers = None
    if L.relabel(k).exists():
        answers = pd.read_parquet(L.relabel(k))
        if "status" in answers.columns:
            answers = answers[answers["status"].notna()]
    usage = read_json(L.llm_usage(k)) if L.llm_usage(k).exists() else None

    def texts(ids: list[str]) -> pd.DataFrame:
        parts = [pd.DataFrame(columns=["id", "text"])]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            parts += list(
                store.iter_chunks(
                    store_db,
                    ["id", "text"],
                    where=f"id IN ({','.join('?' * len(part))})",
                    params=part,
                    chunk_size=chunk,
                )
            )
        return pd.concat(parts, ignore_index=True)

    return bias_report(
        labels,
        s.classes,
        iteration=int(k),
        out_dir=L.analysis_dir,
        changes=changes,
        predictions=preds,
        answers=answers,
        texts=texts,
        max_drift=s.analysis.max_drift,
        llm_cfg=s.llm,
        cache_dir=cache_dir_for(s.llm, L.root),
        llm_usage=usage,
    )
