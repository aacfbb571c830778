"""Stage gate: the final ensemble's test macro-F1 against gate.f1_threshold; retrain up to
gate.max_attempts times; alert (metrics/alerts.jsonl + $SENTILOOP_ALERT_WEBHOOK) when still below.
A failed gate is recorded in metrics/gate.json (deployable: false), not raised."""
from pathlib import Path

import _common
from sentiloop.gate import gate_step

if __name__ == "__main__":
    params = _common.params()
    last = f"it{params['loop']['max_iterations']}"
    r = gate_step(params, store_db=Path("data/final/sentences.sqlite"), models_dir=Path(f"models/{last}"),
                  final_eval=Path(f"metrics/eval/{last}.json"), predictions=Path("data/final/predictions.parquet"),
                  out_models=Path("models/gate"), gate_json=Path("metrics/gate.json"),
                  alerts=Path("metrics/alerts.jsonl"))
    print({k: r[k] for k in ("passed", "f1", "threshold", "attempts", "deployable")})
