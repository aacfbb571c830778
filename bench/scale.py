"""Scale and speed over NSMC: per-stage peak memory at 10% and 100% of the 712,383 reviews, and
per-member throughput. See `python bench/scale.py --help` and docs/benchmarks.md.

    python bench/scale.py                                   # 71,238 and 712,383 rows, lexicon
    python bench/scale.py --members lexicon,bilstm          # once the BiLSTM member is on main
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentiloop.benchmark.scale import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
