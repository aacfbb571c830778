"""Stage analyze@itK: the bias report of iteration K (metrics/analysis/itK.md + .json); with an
LLM provider configured, its review of edge cases and misclassified samples is appended."""
from pathlib import Path

import _common
from sentiloop.analysis import analyze_step
from sentiloop.relabel import cache_dir_for

if __name__ == "__main__":
    a = _common.iteration_args(__doc__)
    params = _common.params()
    it = f"it{a.k}"
    r = analyze_step(params, a.k, Path(f"data/{it}/sentences.sqlite"), Path(f"data/{it}/predictions.parquet"),
                     Path(f"data/{it}/relabel.parquet"), Path(f"metrics/llm/{it}.json"), Path("metrics/analysis"),
                     cache_dir=cache_dir_for(params.get("llm"), _common.ROOT))
    print({"iteration": a.k, "max_abs_drift": r["max_abs_drift"], "mitigation": r["mitigation"]["engage"],
           "review": r["review"]["status"]})
