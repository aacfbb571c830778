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

from sentiloop.layout import Layout
from sentiloop.settings import Settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; deterministic PNGs
    import matplotlib.pyplot as plt

    from sentiloop.fonts import use_cjk_font

    use_cjk_font()  # Hangul words and class names render instead of empty boxes
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
    # iteration -> the eval json's ensemble weighting record (weights, evidence, zeroed members)
    weighting: dict[int, dict[str, Any]] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    # split -> {"it0": ensemble macro-F1 of iteration 0's models, "final": of the last models}
    cleaning: dict[str, dict[str, float]] = field(default_factory=dict)
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
    for ax in list(axes.flat)[len(metrics) :]:
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
            ax.plot(ks, [s[k] for k in ks], marker="o", label=name, linewidth=2.5 if name == "ensemble" else 1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel(metric)
    ax.set_title(f"per-member and ensemble {metric}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _heatmap(
    ax, matrix: np.ndarray, classes: Sequence[str], title: str, xlabel: str, ylabel: str, normalize_rows: bool = True
) -> None:
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
            ax.text(
                j,
                i,
                f"{int(m[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > 0.6 else "black",
            )


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


def plot_distribution(distribution: Mapping[int, Mapping[str, int]], classes: Sequence[str], path: Path) -> Path | None:
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
    fig, axes = plt.subplots(
        1, n, figsize=(3.4 * n, 0.28 * max(len(w) for w in words.values()) + 1.2), squeeze=False, layout="constrained"
    )
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
    return {
        "n": int(len(v)),
        "mean": round(float(v.mean()), 2),
        "p50": float(np.percentile(v, 50)),
        "p95": float(np.percentile(v, 95)),
        "p99": float(np.percentile(v, 99)),
        "max": int(v.max()),
        "empty": int((v == 0).sum()),
    }


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
    image_dir = Path(image_dir) if image_dir else out_md.parent / out_md.stem  # report.md -> report/

    def rel(p: Path) -> str:
        return p.relative_to(out_md.parent).as_posix() if p.is_relative_to(out_md.parent) else str(p)

    figures: dict[str, Path] = {}
    md: list[str] = [f"# {data.title}", ""]
    md.append(
        "Generated by the `report` stage (`python stages/report.py`); images are PNGs next "
        "to this file, and every figure's numbers are in the table under it."
    )
    md.append("")

    if data.gate:
        md += ["## Quality gate", "", gate_sentence(data.gate), ""]
    if data.cleaning:
        md += ["## Did cleaning help?", "", cleaning_section(data.cleaning), ""]
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
    section(
        f"Per-member and ensemble {data.accuracy_metric}",
        "accuracy",
        png,
        _series_table(data.accuracy) if data.accuracy else "",
        "no per-model metrics found",
    )

    md.extend(
        ["## Ensemble weights", "", weights_section(data.weighting) or "_no per-iteration weighting records found_", ""]
    )

    png = plot_confusions(data.confusion, data.classes, image_dir / "confusion.png")
    corner = "true \\ predicted"
    body = "\n\n".join(f"**{name}**\n\n{_matrix_table(m, data.classes, corner)}" for name, m in data.confusion.items())
    section("Confusion matrices (test split)", "confusion", png, body, "no test predictions found")

    png = plot_transitions(data.transitions, data.classes, image_dir / "transitions.png")
    body = ""
    if data.transitions is not None:
        t = np.asarray(data.transitions)
        changed = int(t.sum() - np.trace(t))
        body = (
            f"{changed} of {int(t.sum())} train labels changed "
            f"({changed / max(int(t.sum()), 1):.2%}).\n\n" + _matrix_table(t, data.classes, "original \\ final")
        )
    section("Original -> final labels", "transitions", png, body, "no final store found")

    png = plot_distribution(data.distribution, data.classes, image_dir / "distribution.png")
    body = (
        _table(
            ["iteration", *data.classes, "total"],
            [[k, *[d.get(c, 0) for c in data.classes], sum(d.values())] for k, d in sorted(data.distribution.items())],
        )
        if data.distribution
        else ""
    )
    section("Class distribution per iteration (train)", "distribution", png, body, "no stores found")

    png = plot_lexicon(data.lexicon_words, image_dir / "lexicon.png")
    body = "\n".join(
        f"- **{c}**: " + ", ".join(f"{w} ({s:.2f})" for w, s in ws) for c, ws in data.lexicon_words.items()
    )
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


def gate_sentence(g: Mapping[str, Any]) -> str:
    """The gate's verdict in one sentence: the test score, and which attempt dev chose."""
    verdict = "PASSED, deployable" if g.get("passed") else "FAILED, not deployable"
    out = (
        f"**{verdict}**: test macro-F1 {g.get('f1')} vs threshold {g.get('threshold')}, "
        f"{g.get('attempts', 0)} retraining attempt(s)."
    )
    chosen = g.get("selected_attempt", 0)
    which = "the loop's own models" if not chosen else f"retraining attempt {chosen}"
    if g.get("attempts") and g.get("selected_on") == "dev":
        out += (
            f" Attempts were compared on dev macro-F1 only ({g.get('dev_f1')} for {which}, the "
            f"best of {g['attempts'] + 1}); test scored the chosen models once."
        )
    elif g.get("attempts"):  # a gate.json written before the gate chose on dev
        out += (
            f" {which.capitalize()} was chosen on its test score, so this test figure is "
            "optimistic (a verdict from before the gate chose on dev)."
        )
    return out


def cleaning_verdict(cleaning: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Splits on which the final models' ensemble macro-F1 is not above iteration 0's."""
    return [
        split
        for split, v in cleaning.items()
        if v.get("it0") is not None and v.get("final") is not None and v["final"] <= v["it0"]
    ]


def cleaning_section(cleaning: Mapping[str, Mapping[str, float]]) -> str:
    rows = [
        [
            split,
            v.get("it0"),
            v.get("final"),
            None if v.get("it0") is None or v.get("final") is None else v["final"] - v["it0"],
        ]
        for split, v in cleaning.items()
    ]
    table = _table(["split", "iteration 0 (original labels)", "final", "change"], rows)
    worse = cleaning_verdict(cleaning)
    if worse:
        head = (
            f"**Cleaning did not improve {' or '.join(worse)} macro-F1 over iteration 0** (the "
            "models trained on the original labels): the corrected labels bought nothing "
            "measurable there; consider the original labels, a stricter schedule, or more "
            "evidence per correction."
        )
    else:
        head = "Cleaning improved the ensemble's dev and test macro-F1 over iteration 0."
    return head + "\n\n" + table


def cleaning_from_metrics(metrics_dir: str | Path, n: int) -> dict[str, dict[str, float]]:
    """Ensemble macro-F1 of iteration 0's models and of the final ones, per split (eval/it0.json,
    eval/it<n>.json); {} when either is missing."""
    first, last = Path(metrics_dir) / "eval" / "it0.json", Path(metrics_dir) / "eval" / f"it{n}.json"
    if n < 1 or not first.exists() or not last.exists():
        return {}
    a, b = _read_json(first)["ensemble"], _read_json(last)["ensemble"]
    return {
        split: {"it0": float(a[split]["macro_f1"]), "final": float(b[split]["macro_f1"])}
        for split in ("dev", "test")
        if (a.get(split) or {}).get("macro_f1") is not None and (b.get(split) or {}).get("macro_f1") is not None
    }


def weights_section(weighting: Mapping[int, Mapping[str, Any]]) -> str:
    """The weights each iteration's ensemble used, how they were chosen, and why a member got 0."""
    if not weighting:
        return ""
    members = list(dict.fromkeys(m for w in weighting.values() for m in (w.get("weights") or {})))
    rows = []
    for k, w in sorted(weighting.items()):
        how = w.get("method", "")
        if w.get("evidence"):
            how += f" on {w['evidence']} ({w.get('n_rows', 0)} rows)"
        rows.append([k, *[(w.get("weights") or {}).get(m, "") for m in members], how, w.get("majority_accuracy", "")])
    lines = [_table(["models of iteration", *members, "weights", "majority-class baseline"], rows), ""]
    for k, w in sorted(weighting.items()):
        for m, why in (w.get("zeroed") or {}).items():
            lines.append(f"- iteration {k}: **{m}** weight 0: {why}")
        if w.get("fallback"):
            lines.append(f"- iteration {k}: seed weights kept: {w['fallback']}")
    return "\n".join(lines).rstrip()


def is_png(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_SIGNATURE


# --- collecting the data from the pipeline's outputs ----------------------------------------


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _iteration_number(path: Path) -> int | None:
    stem = path.stem
    return int(stem[2:]) if stem.startswith("it") and stem[2:].isdigit() else None


def _convergence(iterations: Mapping[int, dict], evals: Mapping[int, dict]) -> dict[str, dict[int, float]]:
    """Convergence series from per-iteration records (metrics/iterations/itK.json) and
    evaluations (metrics/eval/itK.json), keyed by iteration number."""
    out: dict[str, dict[int, float]] = {"label_change_rate": {}, "dev_macro_f1": {}, "lexicon_dict_change_rate": {}}
    for k, rec in sorted(iterations.items()):
        if not rec.get("passed_through") and rec.get("label_change_rate") is not None:
            out["label_change_rate"][k] = float(rec["label_change_rate"])
    for k, rec in sorted(evals.items()):
        out["dev_macro_f1"][k] = float(rec["ensemble"]["dev"]["macro_f1"])
        dcr = (rec.get("members", {}).get("lexicon") or {}).get("dict_change_rate")
        if dcr is not None:
            out["lexicon_dict_change_rate"][k] = float(dcr)
    return {m: s for m, s in out.items() if s}


def _records(directory: Path) -> dict[int, dict]:
    out = {}
    for p in sorted(Path(directory).glob("it*.json")):
        k = _iteration_number(p)
        if k is not None:
            out[k] = _read_json(p)
    return out


def convergence_from_metrics(metrics_dir: str | Path) -> dict[str, dict[int, float]]:
    """Per-iteration convergence series from a run's metrics/ directory (iterations/ + eval/)."""
    metrics_dir = Path(metrics_dir)
    return _convergence(_records(metrics_dir / "iterations"), _records(metrics_dir / "eval"))


def _git(repo: Path, *args: str) -> str:
    import subprocess

    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def convergence_from_rev(repo: str | Path, rev: str) -> dict[str, dict[int, float]]:
    """The same series read from a git commit (a DVC experiment's ref): the per-iteration JSONs
    are git-tracked outputs, so every experiment commit carries them."""
    repo = Path(repo)
    found: dict[str, dict[int, dict]] = {"iterations": {}, "eval": {}}
    listing = _git(repo, "ls-tree", "-r", "--name-only", rev, "--", "metrics/iterations", "metrics/eval")
    for path in listing.split():
        kind = Path(path).parent.name
        k = _iteration_number(Path(path))
        if kind in found and k is not None and path.endswith(".json"):
            found[kind][k] = json.loads(_git(repo, "show", f"{rev}:{path}"))
    return _convergence(found["iterations"], found["eval"])


def experiment_revs(repo: str | Path) -> dict[str, str]:
    """DVC experiments of this repository: {"<name> (<schedule>)": commit}."""
    import yaml

    repo = Path(repo)
    out = {}
    refs = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps")
    for line in refs.splitlines():
        ref, sha = line.split()
        name = ref.rsplit("/", 1)[-1]
        if ref.count("/") < 4 or name.startswith("exec"):  # refs/exps/exec/*: running ones
            continue
        try:
            schedule = (yaml.safe_load(_git(repo, "show", f"{sha}:params.yaml")).get("schedule") or {}).get("name")
        except RuntimeError:
            schedule = None
        out[f"{name} ({schedule})" if schedule else name] = sha
    return out


def weighting_from_metrics(metrics_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Iteration -> the ensemble's weighting record in metrics/eval/itK.json (older runs: the
    weights alone)."""
    out: dict[int, dict[str, Any]] = {}
    for p in sorted((Path(metrics_dir) / "eval").glob("it*.json")):
        k = _iteration_number(p)
        if k is None:
            continue
        ens = _read_json(p).get("ensemble") or {}
        out[k] = dict(ens.get("weighting") or {"weights": ens.get("weights") or {}})
    return out


def accuracy_from_metrics(
    metrics_dir: str | Path, split: str = "test", metric: str = "accuracy"
) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for p in sorted((Path(metrics_dir) / "eval").glob("it*.json")):
        k = _iteration_number(p)
        if k is None:
            continue
        rec = _read_json(p)
        out.setdefault("ensemble", {})[k] = float(rec["ensemble"][split][metric])
        for m, e in (rec.get("members") or {}).items():
            out.setdefault(m, {})[k] = float(e[split][metric])
    return out


def confusion_from_predictions(
    predictions: Path, store_db: Path, classes: Sequence[str], members: Sequence[str], chunk_size: int = 5000
) -> dict[str, np.ndarray]:
    """Test-split confusion matrices per member and for the ensemble, from predictions.parquet."""
    import pyarrow.parquet as pq

    from sentiloop.store import iter_chunks

    index = {c: i for i, c in enumerate(classes)}
    truth = {}
    for frame in iter_chunks(store_db, ("id", "current_label"), where="split = 'test'", chunk_size=chunk_size):
        truth.update(zip(frame["id"].astype(str), frame["current_label"].map(index)))
    names = [*members, "ens"]
    pf = pq.ParquetFile(predictions)
    available = set(pf.schema_arrow.names)
    names = [n for n in names if all(f"p_{n}_{c}" in available for c in classes)]
    out = {("ensemble" if n == "ens" else n): np.zeros((len(classes), len(classes)), dtype=np.int64) for n in names}
    cols = ["id", "split"] + [f"p_{n}_{c}" for n in names for c in classes]
    for batch in pf.iter_batches(batch_size=chunk_size, columns=cols):
        df = batch.to_pandas()
        df = df[df["split"] == "test"]
        y = df["id"].astype(str).map(truth)
        ok = y.notna().to_numpy()
        y = y[ok].astype(int).to_numpy()
        for n in names:
            pred = df[[f"p_{n}_{c}" for c in classes]].to_numpy()[ok].argmax(axis=1)
            np.add.at(out["ensemble" if n == "ens" else n], (y, pred), 1)
    return out


def write_confusion_rows(
    predictions: Path, store_db: Path, classes: Sequence[str], out: Path, chunk_size: int = 5000
) -> int:
    """metrics/plots/confusion.csv: `actual,predicted` for every test row of the final ensemble,
    the table DVC's confusion template counts (`dvc plots show` / `diff`). Returns the rows written."""
    import csv

    import pyarrow.parquet as pq

    from sentiloop.store import iter_chunks

    truth = {}
    for frame in iter_chunks(store_db, ("id", "current_label"), where="split = 'test'", chunk_size=chunk_size):
        truth.update(zip(frame["id"].astype(str), frame["current_label"].astype(str)))
    cols = [f"p_ens_{c}" for c in classes]
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["actual", "predicted"])
        for batch in pq.ParquetFile(predictions).iter_batches(batch_size=chunk_size, columns=["id", "split", *cols]):
            df = batch.to_pandas()
            df = df[df["split"] == "test"]
            pred = np.asarray(classes)[df[cols].to_numpy().argmax(axis=1)] if len(df) else []
            for i, p in zip(df["id"].astype(str), pred):
                if i in truth:
                    w.writerow([truth[i], p])
                    n += 1
    return n


def store_tables(
    store_db: Path, classes: Sequence[str], language: str, *, chunk_size: int = 5000, max_token_rows: int = 50_000
) -> tuple[np.ndarray, dict[str, int], dict[str, np.ndarray]]:
    """One chunked pass over the final store: (original->final transitions on train, original
    train distribution, token lengths per split for up to max_token_rows rows)."""
    from sentiloop.store import iter_chunks
    from sentiloop.text.tokenize import tokenize_many

    index = {c: i for i, c in enumerate(classes)}
    trans = np.zeros((len(classes), len(classes)), dtype=np.int64)
    original: dict[str, int] = {c: 0 for c in classes}
    lengths: dict[str, list[int]] = {}
    seen = 0
    for frame in iter_chunks(store_db, ("text", "label", "current_label", "split"), chunk_size=chunk_size):
        tr = frame[frame["split"] == "train"]
        a = tr["label"].map(index)
        b = tr["current_label"].map(index)
        ok = (a.notna() & b.notna()).to_numpy()
        np.add.at(trans, (a[ok].astype(int).to_numpy(), b[ok].astype(int).to_numpy()), 1)
        for c, n in tr["label"].value_counts().items():
            if c in original:
                original[c] += int(n)
        if seen < max_token_rows:
            part = frame.iloc[: max_token_rows - seen]
            seen += len(part)
            for split, toks in zip(part["split"], tokenize_many(part["text"].astype(str).tolist(), language)):
                lengths.setdefault(str(split), []).append(len(toks))
    return trans, original, {s: np.asarray(v) for s, v in lengths.items()}


def collect(
    s: Settings, L: Layout, *, compare_revs: Mapping[str, str] | None = None, repo: str | Path | None = None
) -> ReportData:
    """Gather everything the report draws from one run's outputs (plus the runs named in
    report.compare and, from the CLI, other experiments' commits)."""
    classes, members, language, chunk = s.classes, s.members, s.data.language, s.loop.chunk_size
    schedule = s.schedule.name
    metrics_dir = L.metrics
    store_db, predictions = L.final_store, L.final_predictions
    models_dir = L.models(s.loop.max_iterations)
    compare, top_words, max_token_rows = s.report.compare, s.report.top_words, s.report.max_token_rows
    data = ReportData(classes=classes, title=f"sentiloop report: {s.data.source} corpus, {schedule} schedule")
    data.convergence = {f"{schedule} (this run)": convergence_from_metrics(metrics_dir)}
    for name, other in (compare or {}).items():
        if Path(other).exists():
            data.convergence[name] = convergence_from_metrics(other)
        else:
            data.notes.append(f"compare run {name!r}: {other} not found, left out")
    for name, rev in (compare_revs or {}).items():
        data.convergence[name] = convergence_from_rev(repo or ".", rev)
    data.accuracy = accuracy_from_metrics(metrics_dir)
    data.cleaning = cleaning_from_metrics(metrics_dir, s.loop.max_iterations)
    data.weighting = weighting_from_metrics(metrics_dir)
    if predictions.exists():
        data.confusion = confusion_from_predictions(predictions, store_db, classes, members, chunk)
    trans, original, lengths = store_tables(
        store_db, classes, language, chunk_size=chunk, max_token_rows=max_token_rows
    )
    data.transitions = trans
    data.token_lengths = lengths
    data.distribution = {0: original}
    for p in sorted((metrics_dir / "iterations").glob("it*.json")):
        k = _iteration_number(p)
        rec = _read_json(p)
        if k is not None and rec.get("class_distribution"):
            data.distribution[k] = {c: int(v) for c, v in rec["class_distribution"].items()}
    if "lexicon" in members and (models_dir / "lexicon").exists():
        from sentiloop.models.lexicon import LexiconModel

        lex = LexiconModel.load(models_dir / "lexicon")
        data.lexicon_words = {c: [(w, float(score)) for w, score in ws] for c, ws in lex.top_words(top_words).items()}
    gate_path = L.gate_json
    if gate_path.exists():
        data.gate = _read_json(gate_path)
        if data.gate.get("selected_attempt"):
            data.notes.append(
                f"the gate deployed retraining attempt {data.gate['selected_attempt']} "
                "(models/gate); the confusion matrices and lexicon words above are "
                "those of the loop's final models"
            )
    summary_path = L.summary
    if summary_path.exists():
        s = _read_json(summary_path)
        data.summary = {
            k: s[k]
            for k in (
                "termination_reason",
                "converged_at",
                "iterations_run",
                "labels_changed_total",
                "labels_changed_share",
                "test_macro_f1",
                "test_accuracy",
                "dev_macro_f1",
            )
            if k in s
        }
    if max_token_rows and sum(len(v) for v in lengths.values()) >= max_token_rows:
        data.notes.append(f"token lengths from the first {max_token_rows} rows of the store")
    return data
