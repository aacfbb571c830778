"""Stage summarize: per-iteration metrics -> dvclive (metrics/live), iteration on the x axis."""
from pathlib import Path

import _common
from sentiloop.summary import collect, log_with_dvclive

if __name__ == "__main__":
    params = _common.params()
    steps = collect(params, Path("data/final/sentences.sqlite"), Path("data/gold.sqlite"), Path("metrics"))
    log_with_dvclive(steps, Path("metrics/live"))
    print(f"logged {len(steps)} iterations to metrics/live")
