"""Stage bundle: the deployable directory models/bundle (members, weights, tokenizer, manifest)."""
from pathlib import Path

import _common
from sentiloop.bundle import bundle_step

if __name__ == "__main__":
    params = _common.params()
    last = f"it{params['loop']['max_iterations']}"
    m = bundle_step(params, models_dir=Path("models/gate"), gate_json=Path("metrics/gate.json"),
                    out_dir=Path("models/bundle"), data_files=[Path("data/final/sentences.sqlite")],
                    metric_files={"summary": Path("metrics/summary.json"),
                                  "eval": Path(f"metrics/eval/{last}.json")})
    print("models/bundle:", list(m["members"]), "deployable" if m["gate"].get("deployable") else "NOT deployable")
