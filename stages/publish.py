"""Stage publish: the refined corpus and the loop's termination reason."""

import _common
from sentiloop.steps import publish

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(publish.run)
