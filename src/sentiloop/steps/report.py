"""Stage report: metrics/report.md with PNG figures under metrics/report/, readable offline and
in a pull request; metrics/plots/confusion.csv for dvc.yaml's confusion plot."""

from __future__ import annotations

from sentiloop.layout import Layout
from sentiloop.report import collect, write_confusion_rows, write_report
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict:
    figures = write_report(collect(s, L), L.report, L.report_figures)
    rows = 0
    if L.final_predictions.exists():
        rows = write_confusion_rows(L.final_predictions, L.final_store, s.classes, L.confusion_plot, s.loop.chunk_size)
    return {"report": str(L.report), "figures": sorted(figures), "confusion_rows": rows}
