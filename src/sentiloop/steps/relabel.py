"""Stage relabel@it<k>: queue the free train rows the correction rule doubts most (judge@it<k>:
P(the label it would keep is wrong) >= correction.queue_at, rows set aside first among equals),
and ask the configured annotator (llm=), or nobody."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sentiloop import store
from sentiloop.jsonio import write_json
from sentiloop.layout import Layout
from sentiloop.relabel import answer_queue, cache_dir_for
from sentiloop.settings import Settings

QUEUE_COLUMNS = ["id", "text", "current_label", "ens_label", "confidence", "p_wrong", "reason", "priority"]


def select_queue(judged: pd.DataFrame, queue_at: float, max_rows: int) -> pd.DataFrame:
    """The rows worth an annotator's look, most doubtful first: doubt = 1 - P(verdict's label).

    reason: aside (suspect, not flipped), flipped (the rule changed it), suspect (kept, doubted)."""
    doubt = 1.0 - judged["strength"].astype(float)
    picked = judged[doubt >= queue_at].assign(priority=doubt[doubt >= queue_at])
    reason = pd.Series("suspect", index=picked.index)
    reason[picked["label"] != picked["original"]] = "flipped"
    reason[picked["aside"].astype(int) == 1] = "aside"
    picked = picked.assign(
        reason=reason, current_label=picked["label"], ens_label=picked["best"], confidence=picked["strength"]
    )
    picked = picked.sort_values(["priority", "id"], ascending=[False, True], kind="stable")
    return picked.head(int(max_rows)).reset_index(drop=True)


def run(s: Settings, L: Layout, k: int) -> dict:
    store_db = L.store(k - 1)
    queue = select_queue(pd.read_parquet(L.judgement(k)), s.correction.queue_at, s.correction.relabel_queue_max)
    texts = _texts_of(store_db, queue["id"].tolist())
    queue = queue.assign(text=[texts[i] for i in queue["id"]])[QUEUE_COLUMNS]
    answers, usage = answer_queue(
        queue, s.llm, s.classes, iteration=k, cache_dir=cache_dir_for(s.llm, L.root), gold_path=L.gold
    )
    out = queue.drop(columns=["text"]).merge(answers, on="id", how="left")
    out_parquet = L.relabel(k)
    out_parquet.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_parquet, index=False)
    usage = {
        **usage,
        "queued": int(len(queue)),
        **{f"queued_{r}": int((queue["reason"] == r).sum()) for r in ("aside", "flipped", "suspect")},
    }
    write_json(L.llm_usage(k), usage)
    return usage


def _texts_of(store_db: Path, ids: list) -> dict:
    """id -> text for a few ids (the relabel queue)."""
    out = {}
    con = store.connect(store_db, readonly=True)
    try:
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            q = f"SELECT id, text FROM sentences WHERE id IN ({', '.join('?' * len(part))})"
            out.update(con.execute(q, part).fetchall())
    finally:
        con.close()
    return out
