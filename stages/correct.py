"""Stage correct@itK: human locks, LLM answers, then ensemble labels above the threshold."""

import _common
from sentiloop.steps import correct

if __name__ == "__main__":
    a = _common.args(__doc__, k=True)
    _common.run(
        lambda s, L: correct.run(s, L, a.k),
        lambda r: print({key: r[key] for key in ("k", "passed_through", "changes", "label_change_rate")}),
    )
