"""Stage summarize: per-iteration metrics -> dvclive (metrics/live), iteration on the x axis,
and the curated plot tables of dvc.yaml's `plots:` (metrics/plots/convergence.csv, members.csv)."""

from __future__ import annotations

from sentiloop.layout import Layout
from sentiloop.settings import Settings
from sentiloop.summary import collect, log_with_dvclive, write_plot_tables


def run(s: Settings, L: Layout) -> list[dict]:
    steps = collect(s, L)
    log_with_dvclive(steps, L.live)
    write_plot_tables(steps, s.members, L.convergence_plot, L.members_plot)
    return steps
