"""Stage gate: the final ensemble's test macro-F1 against gate.f1_threshold; retrain up to
gate.max_attempts times, choose among the attempts on dev, score the chosen one on test; alert (metrics/alerts.jsonl + $SENTILOOP_ALERT_WEBHOOK) when still below.
A failed gate is recorded in metrics/gate.json (deployable: false), not raised."""

from __future__ import annotations

import json
import shutil
from typing import Any

from sentiloop import ensemble
from sentiloop.gate import initial_proba, raise_alert, read_split, run_gate, run_info
from sentiloop.layout import Layout
from sentiloop.models import load_model
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict[str, Any]:
    """Stage `gate`: score, retry, alert; copy (or write) the selected members to models/gate.

    Always succeeds on a low score: the verdict goes to metrics/gate.json and the registry reads it."""
    cfg = s.gate
    classes, chunk, members = s.classes, s.loop.chunk_size, s.members
    n = s.loop.max_iterations
    models_dir, store_db = L.models(n), L.final_store
    models = {m: load_model(models_dir / m) for m in members}
    weights = dict(s.ensemble.weights)
    if L.eval(n).exists():  # fitted weights, when the loop fitted them
        weights = json.loads(L.eval(n).read_text())["ensemble"].get("weights") or weights
    train = read_split(store_db, "train", classes, chunk)
    dev = read_split(store_db, "dev", classes, chunk)
    test = read_split(store_db, "test", classes, chunk)
    initial = initial_proba(L.final_predictions, store_db, classes, chunk, len(test.texts))
    initial_dev = initial_proba(L.final_predictions, store_db, classes, chunk, len(dev.texts), "dev")

    result = run_gate(
        models, weights, train=train, dev=dev, test=test, cfg=cfg, initial_proba=initial, initial_dev_proba=initial_dev
    )
    alerts = L.alerts
    alerts.parent.mkdir(parents=True, exist_ok=True)
    alerts.touch()  # an output even when nothing failed (persisted across runs by DVC)
    if not result.passed:
        raise_alert(
            result,
            alerts_path=alerts,
            run={**run_info(), "members": members, "schedule": s.schedule.name, "iterations": n},
            timeout=cfg.webhook_timeout,
        )
    out_models = L.gate_models
    if out_models.exists():
        shutil.rmtree(out_models)
    for name, model in result.models.items():
        if result.selected_attempt == 0:
            shutil.copytree(models_dir / name, out_models / name, ignore=shutil.ignore_patterns("folds"))
        else:
            model.save(out_models / name)
    record = {
        **result.to_json(),
        "members": members,
        "weights": ensemble.normalised_weights(members, weights),
        "classes": classes,
    }
    gate_json = L.gate_json
    gate_json.parent.mkdir(parents=True, exist_ok=True)
    gate_json.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return record
