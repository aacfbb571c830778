"""Stage bundle: the deployable directory models/bundle (members, weights, tokenizer, manifest)."""

import _common
from sentiloop.steps import bundle

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(
        bundle.run,
        lambda m: print(
            "models/bundle:", list(m["members"]), "deployable" if m["gate"].get("deployable") else "NOT deployable"
        ),
    )
