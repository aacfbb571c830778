"""Stage relabel@itK: queue low-confidence / conflicting train rows; an LLM answers if configured."""
from pathlib import Path

import _common
from sentiloop.pipeline import relabel_step
from sentiloop.relabel import cache_dir_for

if __name__ == "__main__":
    a = _common.iteration_args(__doc__)
    params = _common.params()
    u = relabel_step(params, a.k, int(params["loop"]["max_iterations"]), Path(f"data/{a.prev}/sentences.sqlite"),
                     Path(f"data/it{a.k}/predictions.parquet"), Path(f"data/it{a.k}/relabel.parquet"),
                     Path(f"metrics/llm/it{a.k}.json"), cache_dir=cache_dir_for(params.get("llm"), _common.ROOT),
                     gold_db=Path("data/gold.sqlite"))
    print(u)
