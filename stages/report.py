"""Stage report: metrics/report.md with PNG figures under metrics/report/."""

import _common
from sentiloop.steps import report

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(report.run, lambda r: print(f"{r['report']}:", ", ".join(r["figures"])))
