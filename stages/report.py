"""Stage report: metrics/report.md with PNG figures under metrics/report/."""
from pathlib import Path

import _common
from sentiloop.report import collect, write_report

if __name__ == "__main__":
    params = _common.params()
    cfg = params.get("report") or {}
    last = f"it{params['loop']['max_iterations']}"
    data = collect(params, metrics_dir=Path("metrics"), store_db=Path("data/final/sentences.sqlite"),
                   predictions=Path("data/final/predictions.parquet"), models_dir=Path(f"models/{last}"),
                   compare=cfg.get("compare") or {}, top_words=int(cfg.get("top_words", 12)),
                   max_token_rows=int(cfg.get("max_token_rows", 50000)))
    figures = write_report(data, Path("metrics/report.md"), Path("metrics/report"))
    print("metrics/report.md:", ", ".join(sorted(figures)))
