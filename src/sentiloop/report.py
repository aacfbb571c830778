"""metrics/report.md with PNG figures: the loop's story, readable offline and in a git diff.

`dvc plots show` renders HTML that fetches vega from a CDN (blank without network) and shows
nothing in a pull-request diff; a Markdown file with PNGs next to it shows in both. Every
figure also has its numbers as a Markdown table, so a reviewer can diff the numbers, not pixels.

The drawing functions take plain data (dicts, arrays); `collect` gathers that data from the
pipeline's outputs, so the figures are testable without running the loop.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # no display; deterministic PNGs
    import matplotlib.pyplot as plt
    return plt


@dataclass
class ReportData:
    """Everything the report draws. Series are indexed by iteration number (0 = before the loop)."""

    classes: list[str]
    title: str = "sentiloop report"
    # run name -> metric name -> {iteration: value}; the current run plus any compared runs
    convergence: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    # model name ("ensemble", "lexicon", ...) -> {iteration: macro-F1 or accuracy}
    accuracy: dict[str, dict[int, float]] = field(default_factory=dict)
    accuracy_metric: str = "accuracy"
    # model name -> (k, k) confusion matrix on the test split (rows true, columns predicted)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)
    # (k, k) counts: original label (rows) -> final label (columns), train split
    transitions: np.ndarray | None = None
    # iteration -> class -> count (train split, current labels)
    distribution: dict[int, dict[str, int]] = field(default_factory=dict)
    # class -> [(word, score)], strongest first
    lexicon_words: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    # split -> array of token counts per text
    token_lengths: dict[str, np.ndarray] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


# --- figures -------------------------------------------------------------------------------

def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return path


def plot_convergence(convergence: Mapping[str, Mapping[str, Mapping[int, float]]], path: Path) -> Path | None:
    runs = {r: m for r, m in convergence.items() if any(m.values())}
    if not runs:
        return None
    metrics = sorted({name for m in runs.values() for name, s in m.items() if s})
    plt = _plt()
    cols = min(len(metrics), 3)
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax, metric in zip(axes.flat, metrics):
        for run, series in runs.items():
            s = series.get(metric) or {}
            if s:
                ks = sorted(s)
                ax.plot(ks, [s[k] for k in ks], marker="o", label=run)
        ax.set_title(metric)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("convergence per schedule")
    return _save(fig, path)


def plot_accuracy(accuracy: Mapping[str, Mapping[int, float]], metric: str, path: Path) -> Path | None:
    if not any(accuracy.values()):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for name, s in accuracy.items():
        if s:
            ks = sorted(s)
            ax.plot(ks, [s[k] for k in ks], marker="o", label=name,
                    linewidth=2.5 if name == "ensemble" else 1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric)
    ax.set_title(f"per-member and ensemble {metric}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _heatmap(ax, matrix: np.ndarray, classes: Sequence[str], title: str, xlabel: str, ylabel: str,
             normalize_rows: bool = True) -> None:
    m = np.asarray(matrix, dtype=float)
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize_rows else m
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize_rows else None)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > 0.6 else "black")


def plot_confusions(confusion: Mapping[str, np.ndarray], classes: Sequence[str], path: Path) -> Path | None:
    if not confusion:
        return None
    plt = _plt()
    n = len(confusion)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), squeeze=False, layout="constrained")
    for ax, (name, m) in zip(axes.flat, confusion.items()):
        _heatmap(ax, m, classes, name, "predicted", "true")
    fig.suptitle("confusion on the test split (colour: row share)")
    return _save(fig, path)


def plot_transitions(transitions: np.ndarray | None, classes: Sequence[str], path: Path) -> Path | None:
    if transitions is None:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3.6), layout="constrained")
    _heatmap(ax, transitions, classes, "original -> final label (train)", "final label", "original label")
    return _save(fig, path)


def plot_distribution(distribution: Mapping[int, Mapping[str, int]], classes: Sequence[str],
                      path: Path) -> Path | None:
    if not distribution:
        return None
    plt = _plt()
    ks = sorted(distribution)
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    bottom = np.zeros(len(ks))
    for c in classes:
        vals = np.array([distribution[k].get(c, 0) for k in ks], dtype=float)
        totals = np.array([max(sum(distribution[k].values()), 1) for k in ks], dtype=float)
        share = vals / totals
        ax.bar([str(k) for k in ks], share, bottom=bottom, label=c)
        bottom += share
    ax.set_xlabel("iteration (0 = original labels)")
    ax.set_ylabel("share of train rows")
    ax.set_title("class distribution per iteration")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_lexicon(words: Mapping[str, Sequence[tuple[str, float]]], path: Path) -> Path | None:
    words = {c: list(w) for c, w in words.items() if w}
    if not words:
        return None
    plt = _plt()
    n = len(words)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 0.28 * max(len(w) for w in words.values()) + 1.2),
                             squeeze=False, layout="constrained")
    for ax, (c, ws) in zip(axes.flat, words.items()):
        labels = [w for w, _ in ws][::-1]
        ax.barh(labels, [s for _, s in ws][::-1])
        ax.set_title(c, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("lexicon: strongest words per class")
    return _save(fig, path)


def plot_token_lengths(lengths: Mapping[str, np.ndarray], path: Path) -> Path | None:
    lengths = {s: np.asarray(v) for s, v in lengths.items() if len(v)}
    if not lengths:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    top = int(max(np.percentile(v, 99.5) for v in lengths.values())) + 1
    bins = np.arange(0, top + 2)
    for split, v in lengths.items():
        ax.hist(np.minimum(v, top), bins=bins, histtype="step", density=True, label=split)
    ax.set_xlabel("tokens per text (clipped at p99.5)")
    ax.set_ylabel("density")
    ax.set_title("token length")
    ax.legend(fontsize=8)
    return _save(fig, path)


def length_stats(lengths: np.ndarray) -> dict[str, float]:
    v = np.asarray(lengths)
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean": round(float(v.mean()), 2), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "p99": float(np.percentile(v, 99)),
            "max": int(v.max()), "empty": int((v == 0).sum())}


# --- markdown --------------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.4f}"
        return str(x)
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def _series_table(series: Mapping[str, Mapping[int, float]]) -> str:
    ks = sorted({k for s in series.values() for k in s})
    names = [n for n, s in series.items() if s]
    return _table(["iteration", *names], [[k, *[series[n].get(k, "") for n in names]] for k in ks])


def _matrix_table(m: np.ndarray, classes: Sequence[str], corner: str) -> str:
    return _table([corner, *classes], [[c, *[int(x) for x in row]] for c, row in zip(classes, m)])


def write_report(data: ReportData, out_md: str | Path, image_dir: str | Path | None = None) -> dict[str, Path]:
    """Draw every figure that has data and write the Markdown; returns {figure: png path}.

    A figure without data is left out with a line saying why, never drawn empty."""
    out_md = Path(out_md)
    image_dir = Path(image_dir) if image_dir else out_md.parent / "report"
    rel = lambda p: p.relative_to(out_md.parent).as_posix() if p.is_relative_to(out_md.parent) else str(p)
    figures: dict[str, Path] = {}
    md: list[str] = [f"# {data.title}", ""]
    md.append("Generated by the `report` stage (`python stages/report.py`); images are PNGs next "
              "to this file, and every figure's numbers are in the table under it.")
    md.append("")

    if data.gate:
        g = data.gate
        verdict = "PASSED, deployable" if g.get("passed") else "FAILED, not deployable"
        md += ["## Quality gate", "",
               f"**{verdict}**: test macro-F1 {g.get('f1')} vs threshold {g.get('threshold')}, "
               f"{g.get('attempts', 0)} retraining attempt(s).", ""]
    if data.summary:
        md += ["## Summary", "", _table(["", "value"], [[k, v] for k, v in data.summary.items()]), ""]

    def section(title: str, key: str, png: Path | None, body: str, missing: str) -> None:
        md.extend([f"## {title}", ""])
        if png is not None:
            figures[key] = png
            md.extend([f"![{title}]({rel(png)})", ""])
        md.extend([body if png is not None or body else f"_{missing}_", ""])

    png = plot_convergence(data.convergence, image_dir / "convergence.png")
    body = "\n\n".join(f"**{run}**\n\n{_series_table(m)}" for run, m in data.convergence.items() if any(m.values()))
    section("Convergence", "convergence", png, body, "no per-iteration metrics found")

    png = plot_accuracy(data.accuracy, data.accuracy_metric, image_dir / "accuracy.png")
    section(f"Per-member and ensemble {data.accuracy_metric}", "accuracy", png,
            _series_table(data.accuracy) if data.accuracy else "", "no per-model metrics found")

    png = plot_confusions(data.confusion, data.classes, image_dir / "confusion.png")
    corner = "true \\ predicted"
    body = "\n\n".join(f"**{name}**\n\n{_matrix_table(m, data.classes, corner)}"
                       for name, m in data.confusion.items())
    section("Confusion matrices (test split)", "confusion", png, body, "no test predictions found")

    png = plot_transitions(data.transitions, data.classes, image_dir / "transitions.png")
    body = ""
    if data.transitions is not None:
        t = np.asarray(data.transitions)
        changed = int(t.sum() - np.trace(t))
        body = (f"{changed} of {int(t.sum())} train labels changed "
                f"({changed / max(int(t.sum()), 1):.2%}).\n\n"
                + _matrix_table(t, data.classes, "original \\ final"))
    section("Original -> final labels", "transitions", png, body, "no final store found")

    png = plot_distribution(data.distribution, data.classes, image_dir / "distribution.png")
    body = _table(["iteration", *data.classes, "total"],
                  [[k, *[d.get(c, 0) for c in data.classes], sum(d.values())]
                   for k, d in sorted(data.distribution.items())]) if data.distribution else ""
    section("Class distribution per iteration (train)", "distribution", png, body, "no stores found")

    png = plot_lexicon(data.lexicon_words, image_dir / "lexicon.png")
    body = "\n".join(f"- **{c}**: " + ", ".join(f"{w} ({s:.2f})" for w, s in ws)
                     for c, ws in data.lexicon_words.items())
    section("Lexicon: strongest words per class", "lexicon", png, body, "no lexicon member in this run")

    png = plot_token_lengths(data.token_lengths, image_dir / "token_lengths.png")
    stats = {s: length_stats(v) for s, v in data.token_lengths.items()}
    keys = ["n", "mean", "p50", "p95", "p99", "max", "empty"]
    body = _table(["split", *keys], [[s, *[st.get(k, "") for k in keys]] for s, st in stats.items()]) if stats else ""
    section("Token length", "token_lengths", png, body, "no texts found")

    if data.notes:
        md += ["## Notes", "", *[f"- {n}" for n in data.notes], ""]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    return figures


def is_png(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_SIGNATURE
