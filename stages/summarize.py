"""Stage summarize: per-iteration metrics -> dvclive (metrics/live), iteration on the x axis."""

import _common
from sentiloop.steps import summarize

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(summarize.run, lambda steps: print(f"logged {len(steps)} iterations to metrics/live"))
