"""Korean on gold labels: offline encoders for the BERT member (throughput, accuracy) and every
member's and the ensemble's NSMC test accuracy.

    python bench/encoders.py                       # 20,000 train (10% dev) / 5,000 test
    python bench/encoders.py --train 2000 --test 1000 --encoders use-multilingual-v3 --no-doc

See `python bench/encoders.py --help` and docs/benchmarks.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentiloop.benchmark.encoders import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
