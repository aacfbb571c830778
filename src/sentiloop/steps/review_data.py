"""Stage review_data: the review app's precomputed summaries under data/review/ (overview,
per-iteration records, the ranked review queue, the human labels already applied)."""

from __future__ import annotations

from sentiloop.layout import Layout
from sentiloop.review_data import build
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict:
    return build(s, L)
