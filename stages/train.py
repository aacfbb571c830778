"""Stage train@<member>: iteration 0, every member fitted on the original labels."""
import sys
from pathlib import Path

import _common
from sentiloop.pipeline import train_step

if __name__ == "__main__":
    member = sys.argv[1]
    print(train_step(_common.params(), member, Path("data/it0/sentences.sqlite"), Path("models/it0") / member))
