"""Stage relabel@it<k>: queue the train rows worth an annotator's look (low ensemble confidence,
members in conflict), most uncertain first, and ask the configured annotator (llm=), or nobody.

Streams the store and the predictions; holds only the bounded queue, then reads its texts."""
from __future__ import annotations

from pathlib import Path

from sentiloop import correction, schedules, store
from sentiloop.jsonio import write_json
from sentiloop.layout import Layout
from sentiloop.predictions import train_chunks
from sentiloop.relabel import answer_queue, cache_dir_for
from sentiloop.settings import Settings


def run(s: Settings, L: Layout, k: int) -> dict:
    store_db, predictions = L.store(k - 1), L.predictions(k)
    n = s.loop.max_iterations
    guess = (schedules.scheduled_value(s.schedule, k, n) if s.schedule.name != "curriculum"
             else s.correction.relabel_below)
    unlocked = (rows[rows["locked"] == 0] for rows in
                train_chunks(store_db, predictions, ["id", "current_label", "locked"], s.loop.chunk_size))
    queue = correction.stream_relabel_queue(unlocked, guess, s.correction.relabel_below,
                                            s.correction.relabel_queue_max)
    texts = _texts_of(store_db, queue["id"].tolist())
    queue = queue.assign(text=[texts[i] for i in queue["id"]])
    queue = queue[["id", "text", "current_label", "ens_label", "confidence", "agreement", "reason", "priority"]]
    answers, usage = answer_queue(queue, s.llm, s.classes, iteration=k, cache_dir=cache_dir_for(s.llm, L.root),
                                  gold_path=L.gold)
    out = queue.drop(columns=["text"]).merge(answers, on="id", how="left")
    out_parquet = L.relabel(k)
    out_parquet.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_parquet, index=False)
    usage = {**usage, "queued": int(len(queue)), "queued_low_confidence": int((queue["reason"] == "low_confidence").sum()),
             "queued_conflict": int((queue["reason"] == "conflict").sum())}
    write_json(L.llm_usage(k), usage)
    return usage


def _texts_of(store_db: Path, ids: list) -> dict:
    """id -> text for a few ids (the relabel queue)."""
    out = {}
    con = store.connect(store_db, readonly=True)
    try:
        for i in range(0, len(ids), 500):
            part = list(ids[i:i + 500])
            q = f"SELECT id, text FROM sentences WHERE id IN ({', '.join('?' * len(part))})"
            out.update(con.execute(q, part).fetchall())
    finally:
        con.close()
    return out
