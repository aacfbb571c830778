"""Stage split: stratified, seeded train/dev/test -> data/it0/sentences.sqlite."""
from pathlib import Path

import _common
from sentiloop.pipeline import split_step

if __name__ == "__main__":
    m = split_step(_common.params(), Path("data/ingested.sqlite"), Path("data/it0/sentences.sqlite"),
                   Path("data/it0/loop_state.json"), Path("metrics/split.json"))
    print(m["rows_per_split"])
