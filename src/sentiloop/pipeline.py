"""The iteration driver: every DVC stage of dvc.yaml as one call, in dvc.yaml's order.

`plan(settings)` lists the unrolled stages by their DVC names (ingest, split, train@<member>,
predict@it<k>, judge@it<k>, relabel@it<k>, correct@it<k>, analyze@it<k>, retrain@it<k>-<member>,
predict_final, publish, summarize, gate, bundle, report, review_data), each bound to the same function of
sentiloop.steps that its stage script calls. `run_loop` runs them in one process (tests and
benchmarks), so what they measure is what `dvc repro` runs; tests/test_dag.py checks that this
plan and dvc.yaml name the same stages, in an order dvc.yaml's dependencies allow.

Stage scripts never import this module (it imports every step): each imports its own step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from sentiloop.layout import Layout
from sentiloop.settings import Settings, validate_composed
from sentiloop.steps import (
    analyze,
    bundle,
    correct,
    gate,
    ingest,
    judge,
    predict,
    publish,
    relabel,
    report,
    review_data,
    split,
    summarize,
    train,
)

LOOP_END = "summarize"  # run_loop's default last stage: the loop and its metrics, not the ops after it


@dataclass(frozen=True)
class Stage:
    name: str  # the stage's name in dvc.yaml / dvc.lock
    run: Callable[[Settings, Layout], Any]
    k: int | None = None  # the iteration, for per-iteration stages
    member: str | None = None


def plan(s: Settings) -> list[Stage]:
    """Every stage of dvc.yaml, unrolled for these settings, in an order that respects its deps."""
    members = s.members
    stages = [Stage("ingest", ingest.run), Stage("split", split.run)]
    stages += [Stage(f"train@{m}", partial(train.run, member=m), member=m) for m in members]
    for k in range(1, s.loop.max_iterations + 1):
        stages += [
            Stage(f"predict@it{k}", partial(predict.run, k=k), k=k),
            Stage(f"judge@it{k}", partial(judge.run, k=k), k=k),
            Stage(f"relabel@it{k}", partial(relabel.run, k=k), k=k),
            Stage(f"correct@it{k}", partial(correct.run, k=k), k=k),
            Stage(f"analyze@it{k}", partial(analyze.run, k=k), k=k),
        ]
        stages += [Stage(f"retrain@it{k}-{m}", partial(train.retrain, k=k, member=m), k=k, member=m) for m in members]
    stages += [
        Stage("predict_final", predict.final),
        Stage("publish", publish.run),
        Stage("summarize", summarize.run),
        Stage("gate", gate.run),
        Stage("bundle", bundle.run),
        Stage("report", report.run),
        Stage("review_data", review_data.run),
    ]
    return stages


def run_loop(
    s: Settings | Mapping[str, Any],
    root: str | Path | Layout,
    *,
    until: str = LOOP_END,
    on_stage: Callable[[Stage, Any], None] | None = None,
) -> dict:
    """Run the stages of `plan(s)` up to and including `until` in `root` (a work directory or a
    Layout), without DVC. `s`: the settings, or a params tree (validated here, its iteration
    chain re-derived). `on_stage(stage, result)` sees every stage's result as it finishes.

    Returns the publish stage's summary with the per-iteration metrics under "iterations" (when
    the run got that far), else {}."""
    if not isinstance(s, Settings):
        s = validate_composed(s)
    L = root if isinstance(root, Layout) else Layout(Path(root))
    L.root.mkdir(parents=True, exist_ok=True)
    stages = plan(s)
    names = [st.name for st in stages]
    if until not in names:
        raise ValueError(f"no stage {until!r}; stages: {', '.join(names)}")
    results: dict[str, Any] = {}
    for st in stages[: names.index(until) + 1]:
        results[st.name] = st.run(s, L)
        if on_stage is not None:
            on_stage(st, results[st.name])
    if "publish" not in results:
        return {}
    out = dict(results["publish"])
    if "summarize" in results:
        out["iterations"] = results["summarize"]
    return out
