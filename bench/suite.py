"""Every planted-noise setting x noise seeds: no correction vs cleanlab vs the loop at its defaults.

python bench/suite.py                     # all settings, seeds 17,18,19 (docs/benchmarks.md)
python bench/suite.py --settings sym30 --seeds 17 --no-doc
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sentiloop.benchmark.suite import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
