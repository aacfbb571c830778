"""Stage split: stratified, seeded train/dev/test -> data/it0/sentences.sqlite."""

import _common
from sentiloop.steps import split

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(split.run, lambda m: print(m["rows_per_split"]))
