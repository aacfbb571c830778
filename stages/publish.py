"""Stage publish: the refined corpus and the loop's termination reason."""
from pathlib import Path

import _common
from sentiloop.pipeline import publish_step

if __name__ == "__main__":
    params = _common.params()
    last = f"it{params['loop']['max_iterations']}"
    s = publish_step(params, Path(f"data/{last}/sentences.sqlite"), Path(f"data/{last}/loop_state.json"),
                     Path(f"metrics/eval/{last}.json"), Path("data/final/sentences.sqlite"), Path("metrics/summary.json"))
    print(s)
