"""Stage summarize: per-iteration metrics -> dvclive (metrics/live), iteration on the x axis."""
from __future__ import annotations

from sentiloop.layout import Layout
from sentiloop.settings import Settings
from sentiloop.summary import collect, log_with_dvclive


def run(s: Settings, L: Layout) -> list[dict]:
    steps = collect(s, L)
    log_with_dvclive(steps, L.live)
    return steps
