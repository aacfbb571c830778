"""Stage review_data: data/review/ (overview, iterations, review queue, applied human labels),
what `sentiloop app` reads."""

import _common
from sentiloop.steps import review_data

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(
        review_data.run,
        lambda o: print(
            f"review queue: {o['queue']['rows']} row(s) of {o['queue']['candidates']} unlocked train row(s)"
        ),
    )
