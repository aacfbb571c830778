"""Stage correct@itK: human locks, LLM answers, then ensemble labels above the threshold."""
from pathlib import Path

import _common
from sentiloop.pipeline import correct_step

if __name__ == "__main__":
    a = _common.iteration_args(__doc__)
    params = _common.params()
    it = f"it{a.k}"
    r = correct_step(params, a.k, int(params["loop"]["max_iterations"]), Path(f"data/{a.prev}/sentences.sqlite"),
                     Path(f"data/{it}/predictions.parquet"), Path(f"data/{it}/relabel.parquet"),
                     Path(f"metrics/eval/{a.prev}.json"), Path(f"data/{a.prev}/loop_state.json"),
                     Path(f"data/{it}/sentences.sqlite"), Path(f"data/{it}/loop_state.json"),
                     Path(f"metrics/iterations/{it}.json"))
    print({k: r[k] for k in ("k", "passed_through", "changes", "label_change_rate")})
