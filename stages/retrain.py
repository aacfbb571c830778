"""Stage retrain@itK-<member>: the member's own strategy, from the previous iteration's model."""
from pathlib import Path

import _common
from sentiloop.pipeline import train_step

if __name__ == "__main__":
    a = _common.iteration_args(__doc__)
    it = f"it{a.k}"
    print(train_step(_common.params(), a.member, Path(f"data/{it}/sentences.sqlite"), Path(f"models/{it}/{a.member}"),
                     prev_dir=Path(f"models/{a.prev}/{a.member}"), state_path=Path(f"data/{it}/loop_state.json")))
