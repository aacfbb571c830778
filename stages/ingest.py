"""Stage ingest: source (data=...) -> data/ingested.sqlite, rejects, gold labels aside."""

import _common
from sentiloop.steps import ingest

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(
        ingest.run,
        lambda m: print(
            f"read {m['read']}: accepted {m['accepted']}, rejected {m['rejected']} {m['rejected_by_reason']}, "
            f"kept {m['kept']}"
        ),
    )
