"""bias_report: statistics + review -> metrics/analysis/itK.md and .json (steps.analyze runs it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .review import llm_review
from .samples import review_samples
from .stats import bias_stats

SAMPLES_WITHOUT_LLM = 20  # samples listed when no llm section is given (the stage passes llm.review.max_samples)


def bias_report(
    labels: pd.DataFrame,
    classes: Sequence[str],
    *,
    iteration: int,
    out_dir: str | Path = "metrics/analysis",
    changes: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None,
    answers: pd.DataFrame | None = None,
    texts: pd.DataFrame | None = None,
    max_drift: float = 0.05,
    llm_cfg: Any = None,
    cache_dir: str | Path | None = None,
    llm_usage: Mapping[str, Any] | None = None,
    split: str | None = "train",
    provider=None,
) -> dict[str, Any]:
    """Compute the statistics, ask for the LLM review when a provider is configured, write
    <out_dir>/it<K>.md and it<K>.json, return the JSON dict (its `mitigation.engage` is the flag
    for the correct stage)."""
    stats = bias_stats(labels, classes, changes=changes, predictions=predictions, max_drift=max_drift, split=split)
    if llm_cfg is not None:
        from sentiloop.relabel.config import parse_config

        llm_cfg = parse_config(llm_cfg)
    samples = review_samples(
        labels,
        predictions=predictions,
        answers=answers,
        texts=texts,
        max_samples=llm_cfg.review.max_samples if llm_cfg is not None else SAMPLES_WITHOUT_LLM,
    )
    review = llm_review(stats, samples, llm_cfg, cache_dir=cache_dir, llm_usage=llm_usage, provider=provider)
    if llm_usage:
        stats["llm_usage"] = {
            k: llm_usage[k]
            for k in llm_usage
            if k
            in (
                "provider",
                "model",
                "simulated",
                "requests",
                "est_cost_usd",
                "rows_answered",
                "rows_cached",
                "rows_applicable",
            )
        }
    stats["iteration"] = iteration
    stats["review"] = {k: v for k, v in review.items()}
    stats["review_samples"] = len(samples)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"it{iteration}.json").write_text(
        json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / f"it{iteration}.md").write_text(render_markdown(stats, samples), encoding="utf-8")
    return stats


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _md_escape(text: str) -> str:
    return re.sub(r"([|`<>])", r"\\\1", str(text))


def render_markdown(stats: Mapping[str, Any], samples: list[dict]) -> str:
    k, classes = stats["iteration"], stats["classes"]
    mit = stats["mitigation"]
    lines = [
        f"# Bias report, iteration {k}",
        "",
        f"{stats['rows']} {stats['split'] or 'all'} rows. Largest class drift from the "
        f"original labels: {100 * stats['max_abs_drift']:.2f} pp ({stats['max_drift_class']}); "
        f"bound {100 * mit['max_drift']:.2f} pp.",
        "",
    ]
    if mit["engage"]:
        moved = ", ".join([f"{c} grew" for c in mit["over"]] + [f"{c} shrank" for c in mit["under"]])
        lines += [
            f"**Drift flagged:** {moved} beyond the bound (rows that may still move into each "
            "class within it: "
            + ", ".join(f"{c} {n}" for c, n in mit["class_caps"].items())
            + "). Under class-conditional noise the original shares are themselves biased: "
            "the correction's drift guard compares with the estimated true mix "
            "(metrics/noise/itK.json).",
            "",
        ]
    else:
        lines += ["No drift flagged: every class is within the bound.", ""]
    d = stats["distribution"]
    lines += ["## Class distribution", ""]
    lines += _table(
        ["class", "original", "current", "drift"],
        [
            [
                c,
                f"{d[c]['original_count']} ({_pct(d[c]['original_share'])})",
                f"{d[c]['current_count']} ({_pct(d[c]['current_share'])})",
                f"{100 * d[c]['drift']:+.2f} pp",
            ]
            for c in classes
        ],
    )
    it = stats["iteration_corrections"]
    lines += [
        "",
        "## Corrections this iteration",
        "",
        f"{it['changes']} label changes"
        + (" (" + ", ".join(f"{s}: {n}" for s, n in it["by_source"].items()) + ")" if it["by_source"] else "")
        + ".",
        "",
    ]
    if it["changes"]:
        lines += _table(
            ["from \\ to"] + classes + ["rate of class"],
            [[a] + [it["flow"][a][b] for b in classes] + [_pct(it["rate_per_class"][a])] for a in classes],
        )
    ov = stats["overturned"]
    lines += ["", "## Original labels overturned so far", ""]
    lines += _table(
        ["original class", "rows", "overturned", "rate"],
        [[c, ov[c]["rows"], ov[c]["overturned"], _pct(ov[c]["rate"])] for c in classes],
    )
    if stats.get("agreement"):
        members = stats.get("members", [])
        lines += ["", "## Member agreement with the current label, per class", ""]
        head = ["class", "rows", "mean agreement", "mean confidence", "ensemble"] + members
        rows = []
        for c in classes:
            e = stats["agreement"][c]
            rows.append(
                [
                    c,
                    e["rows"],
                    f"{e.get('mean_agreement', float('nan')):.3f}",
                    f"{e.get('mean_confidence', float('nan')):.3f}",
                    _pct(e.get("ensemble_agrees_with_label", 0.0)),
                ]
                + [_pct(e.get(f"{m}_agrees_with_label", 0.0)) for m in members]
            )
        lines += _table(head, rows)
    if stats.get("llm_usage"):
        u = stats["llm_usage"]
        lines += [
            "",
            "## LLM relabeling",
            "",
            f"{u.get('provider')} / {u.get('model')}"
            + (" (SIMULATED annotator)" if u.get("simulated") else "")
            + f": {u.get('rows_answered', 0)} answered, {u.get('rows_cached', 0)} from cache, "
            f"{u.get('rows_applicable', 0)} above the confidence bar, "
            f"{u.get('requests', 0)} requests, est. ${u.get('est_cost_usd', 0):.4f}.",
        ]
    rv = stats["review"]
    lines += ["", "## LLM review of edge cases and misclassified samples", ""]
    if rv.get("review"):
        r = rv["review"]
        lines += [
            f"_Written by the LLM ({rv['status']}); a reading aid, not a measurement._",
            "",
            _md_escape(r["summary"]),
            "",
        ]
        for key, title in (
            ("edge_cases", "Edge cases"),
            ("misclassification_patterns", "Misclassification patterns"),
            ("bias_risks", "Bias risks"),
            ("recommendations", "Recommendations"),
        ):
            if r.get(key):
                lines += [f"**{title}**", ""] + [f"- {_md_escape(x)}" for x in r[key]] + [""]
    else:
        lines += [f"No LLM review: {rv.get('reason') or rv.get('status')}.", ""]
    if samples:
        lines += ["### Samples considered", ""]
        lines += _table(
            ["id", "why", "label", "ensemble (conf, agree)", "LLM", "text"],
            [
                [
                    s["id"],
                    s["why"],
                    s["label"],
                    f"{s['ensemble']} ({s['confidence']:.2f}, {s['agreement']:.2f})",
                    s.get("llm_label", ""),
                    _md_escape(s["text"][:120]),
                ]
                for s in samples
            ],
        )
    return "\n".join(lines).rstrip() + "\n"
