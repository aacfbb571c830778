"""Planted-noise benchmark on NSMC: no correction vs cleanlab vs sentiloop's loop vs gold.

    python bench/quality.py                      # defaults: 20,000 train / 5,000 test, 30% flips
    python bench/quality.py --train 3000 --test 1000 --schedules linear --no-doc

See `python bench/quality.py --help` and docs/benchmarks.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentiloop.benchmark.quality import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
