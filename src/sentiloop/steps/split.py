"""Stage split: stratified, seeded train/dev/test -> data/it0/sentences.sqlite."""

from __future__ import annotations

from sentiloop import store
from sentiloop.convergence import LoopState
from sentiloop.jsonio import write_json
from sentiloop.layout import Layout
from sentiloop.noise import restore_test_labels
from sentiloop.settings import Settings
from sentiloop.split import split_store


def run(s: Settings, L: Layout) -> dict:
    out = L.store(0)
    counts = split_store(
        L.ingested,
        out,
        test_size=s.split.test_size,
        dev_size=s.split.dev_size,
        seed=s.split.seed,
        chunk_size=s.loop.chunk_size,
    )
    write_json(L.state(0), LoopState(k=0).to_dict())
    restored = restore_test_labels(out, L.gold) if s.data.noise.active else 0
    m = {
        "rows_per_split": counts,
        **({"test_labels_restored": restored} if s.data.noise.active else {}),
        "labels_per_split": {sp: store.label_counts(out, "label", sp) for sp in counts},
    }
    write_json(L.split_metrics, m)
    return m
