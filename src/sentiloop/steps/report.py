"""Stage report: metrics/report.md with PNG figures under metrics/report/, readable offline and
in a pull request."""
from __future__ import annotations

from sentiloop.layout import Layout
from sentiloop.report import collect, write_report
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict:
    figures = write_report(collect(s, L), L.report, L.report_figures)
    return {"report": str(L.report), "figures": sorted(figures)}
