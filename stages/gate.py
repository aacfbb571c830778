"""Stage gate: the final ensemble's test macro-F1 against gate.f1_threshold; retrain up to
gate.max_attempts times, choose among the attempts on dev, score the chosen one on test; alert (metrics/alerts.jsonl + $SENTILOOP_ALERT_WEBHOOK) when still below.
A failed gate is recorded in metrics/gate.json (deployable: false), not raised."""

import _common
from sentiloop.steps import gate

if __name__ == "__main__":
    _common.args(__doc__)
    _common.run(gate.run, lambda r: print({k: r[k] for k in ("passed", "f1", "threshold", "attempts", "deployable")}))
