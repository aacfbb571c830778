"""Stage retrain@itK-<member>: the member's own strategy, from the previous iteration's model."""

import _common
from sentiloop.steps import train

if __name__ == "__main__":
    a = _common.args(__doc__, k=True, member=True)
    _common.run(lambda s, L: train.retrain(s, L, a.k, a.member))
