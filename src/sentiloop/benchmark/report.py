"""The benchmark table (markdown), the per-iteration plot (PNG), and docs/benchmarks.md sections.

Each benchmark owns one section of docs/benchmarks.md between HTML-comment markers, so a rerun
replaces its own figures and leaves everyone else's text alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

COLUMNS = [
    ("arm", "Arm"),
    ("label_accuracy", "Train label acc. vs gold"),
    ("n_corrections", "Corrections"),
    ("correction_precision", "Corr. precision"),
    ("correction_recall", "Corr. recall"),
    ("test_accuracy", "Test acc."),
    ("test_macro_f1", "Test macro-F1"),
    ("wall_s", "Wall (s)"),
    ("peak_rss_mb", "Peak RSS (MiB)"),
]
BASELINE_STYLE = {
    "none": ("no correction", "tab:gray", ":"),
    "cleanlab_relabel": ("cleanlab relabel", "tab:red", "--"),
    "cleanlab_prune": ("cleanlab prune", "tab:orange", "--"),
    "oracle": ("Bayes oracle relabel", "tab:purple", "-."),
    "ceiling": ("gold ceiling", "black", "-."),
}
ARM_LABELS = {
    "none": "no correction",
    "cleanlab_relabel": "cleanlab: relabel flagged, retrain",
    "cleanlab_prune": "cleanlab: prune flagged, retrain",
    "oracle": "oracle: Bayes relabel from gold-trained members + true noise",
    "ceiling": "ceiling: train on gold",
}


def arm_label(arm: str) -> str:
    if arm.startswith("sentiloop:"):
        schedule, _, variant = arm.split(":", 1)[1].partition("@")
        return f"sentiloop loop, schedule `{schedule}`" + (f" (variant `{variant}`)" if variant else "")
    return ARM_LABELS.get(arm, arm)


def _fmt(key: str, value) -> str:
    if value is None:
        return "–"
    if key in ("n_corrections",):
        return f"{int(value):,}"
    if key == "wall_s":
        return f"{value:.1f}"
    if key == "peak_rss_mb":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.4f}" if key.startswith("test_") or key == "label_accuracy" else f"{value:.3f}"
    return str(value)


def markdown_table(results: Sequence[dict]) -> str:
    missing = [(r.get("arm"), key) for r in results for key, _ in COLUMNS if key not in r]
    if missing:
        raise ValueError(f"results lack table columns: {missing[:5]}")
    lines = [
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|",
    ]
    for r in results:
        cells = [arm_label(r["arm"])] + [_fmt(k, r[k]) for k, _ in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_iterations(results: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """Label accuracy and test macro-F1 per iteration for each schedule, baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sentiloop.fonts import use_cjk_font

    use_cjk_font()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), dpi=90)
    loops = [r for r in results if r["arm"].startswith("sentiloop:") and r.get("trace")]
    max_it = max([len(r["trace"]) - 1 for r in loops] + [1])
    schedules = list(dict.fromkeys(r["arm"].split(":", 1)[1].partition("@")[0] for r in loops))
    variants = list(dict.fromkeys(r["arm"].partition("@")[2] for r in loops))
    colors = dict(zip(schedules, ["tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive"] * 3))
    styles = dict(zip(variants, [("-", "o"), ("--", "s"), (":", "^"), ("-.", "v")] * 3))
    for ax, key, name in (
        (axes[0], "label_accuracy", "train label accuracy vs gold"),
        (axes[1], "test_macro_f1", "test macro-F1"),
    ):
        for r in loops:
            schedule, _, variant = r["arm"].split(":", 1)[1].partition("@")
            its = [t["iteration"] for t in r["trace"] if t.get(key) is not None]
            vals = [t[key] for t in r["trace"] if t.get(key) is not None]
            line, marker = styles[variant]
            ax.plot(
                its,
                vals,
                color=colors[schedule],
                linestyle=line,
                marker=marker,
                markersize=4,
                label=schedule + (f" @{variant}" if variant else ""),
            )
        for r in results:
            style = BASELINE_STYLE.get(r["arm"])
            if style and r.get(key) is not None:
                ax.axhline(r[key], color=style[1], linestyle=style[2], linewidth=1.2, label=style[0])
        ax.set_xlabel("iteration (0 = trained on the noisy labels)")
        ax.set_title(name)
        ax.set_xticks(range(0, max_it + 1))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def replace_section(doc: str | Path, name: str, body: str, *, heading: str | None = None) -> Path:
    """Write `body` between <!-- name:start --> and <!-- name:end --> in doc (created if absent)."""
    doc = Path(doc)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + (f"## {heading}\n\n" if heading else "") + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return doc
