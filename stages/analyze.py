"""Stage analyze@itK: the bias report of iteration K (metrics/analysis/itK.md + .json); with an
LLM provider configured, its review of edge cases and misclassified samples is appended."""

import _common
from sentiloop.steps import analyze

if __name__ == "__main__":
    a = _common.args(__doc__, k=True)
    _common.run(
        lambda s, L: analyze.run(s, L, a.k),
        lambda r: print(
            {
                "iteration": a.k,
                "max_abs_drift": r["max_abs_drift"],
                "mitigation": r["mitigation"]["engage"],
                "review": r["review"]["status"],
            }
        ),
    )
