"""Stage ingest: the source (data=...) -> data/ingested.sqlite, rejects, gold labels aside."""

from __future__ import annotations

from sentiloop.ingest import ingest
from sentiloop.jsonio import write_json
from sentiloop.layout import Layout
from sentiloop.noise import plant_into_store
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict:
    report = ingest(
        s.data,
        L.ingested,
        L.rejects,
        L.gold,
        chunk_size=s.loop.chunk_size,
        seed=s.seed,
        source_path=L.in_root(s.data.path),
    )
    m = report.as_metrics()
    n = s.data.noise
    if n.active:
        m["noise"] = plant_into_store(L.ingested, L.gold, s.classes, rate=n.rate, matrix=n.matrix, seed=n.seed)
    write_json(L.ingest_metrics, m)
    return m
