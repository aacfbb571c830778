"""Stage train@<member>: iteration 0, every member fitted on the original labels."""

import _common
from sentiloop.steps import train

if __name__ == "__main__":
    a = _common.args(__doc__, member=True)
    _common.run(lambda s, L: train.run(s, L, a.member))
