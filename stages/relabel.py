"""Stage relabel@itK: queue low-confidence / conflicting train rows; an LLM answers if configured."""

import _common
from sentiloop.steps import relabel

if __name__ == "__main__":
    a = _common.args(__doc__, k=True)
    _common.run(lambda s, L: relabel.run(s, L, a.k))
