"""Stage bundle: the deployable directory models/bundle (the gate's selected members, weights,
tokenizer, manifest with versions, metrics, params, data hash and the gate's verdict)."""

from __future__ import annotations

from typing import Any

from sentiloop.bundle import build_bundle
from sentiloop.jsonio import read_json
from sentiloop.layout import Layout
from sentiloop.settings import Settings


def run(s: Settings, L: Layout) -> dict[str, Any]:
    gate = read_json(L.gate_json)
    members = list(gate.get("members") or s.members)
    metric_files = {"summary": L.summary, "eval": L.eval(s.loop.max_iterations)}
    metrics = {name: read_json(p) for name, p in metric_files.items() if p.exists()}
    metrics["gate"] = {k: gate.get(k) for k in ("f1", "threshold", "attempts", "passed")}
    tokenizer = {"negation": s.models.lexicon.negation, "max_text_chars": s.data.max_text_chars}
    return build_bundle(
        L.bundle,
        member_dirs={m: L.gate_models / m for m in members},
        weights=gate.get("weights") or s.ensemble.weights,
        classes=s.classes,
        language=s.data.language,
        tokenizer=tokenizer,
        metrics=metrics,
        params=s.as_params(),
        data_files=[L.final_store],
        gate={k: gate.get(k) for k in ("passed", "deployable", "f1", "threshold", "attempts", "selected_attempt")},
        source={"models": str(L.gate_models), "iterations": s.loop.max_iterations, "schedule": s.schedule.name},
    )
