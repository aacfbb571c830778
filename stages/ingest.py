"""Stage ingest: source (data=...) -> data/ingested.sqlite, rejects, gold labels aside."""
from pathlib import Path

import _common
from sentiloop.pipeline import ingest_step

if __name__ == "__main__":
    m = ingest_step(_common.params(), Path("data/ingested.sqlite"), Path("data/rejects.csv"),
                    Path("data/gold.sqlite"), Path("metrics/ingest.json"))
    print(f"read {m['read']}: accepted {m['accepted']}, rejected {m['rejected']} {m['rejected_by_reason']}, "
          f"kept {m['kept']}")
