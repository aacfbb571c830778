"""`sentiloop review-report --base <rev>` (`make review`): one Markdown file for a pull request.

What changed between a base commit and the workspace (or an experiment, or another commit):
`dvc params diff` and `dvc metrics diff` (their own Markdown tables), the curated figures of both
runs side by side as PNG (the data `dvc plots diff` draws: convergence, per-member accuracy,
the final ensemble's test confusion matrix), the label changes by source (ensemble, LLM, human)
summed over the iterations, and the quality gate's verdict on each side. It is the format CML
users post as a comment (`cml comment create reports/review.md`): images are files next to it.

Everything is read from git-tracked metrics (metrics/*.json, metrics/plots/*.csv,
metrics/iterations/, metrics/eval/), so a base commit needs no DVC cache; a commit made before
metrics/plots/ existed falls back to the per-iteration JSONs for its convergence curve.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sentiloop.errors import SentiloopError
from sentiloop.layout import Layout

WORKSPACE = "workspace"
L = Layout()  # paths relative to the repository root, as committed


class ReviewError(SentiloopError, RuntimeError):
    pass


@dataclass
class Side:
    """One run's reviewable numbers, read from a revision or the workspace."""

    label: str
    params: dict[str, Any] = field(default_factory=dict)
    convergence: dict[str, dict[int, float]] = field(default_factory=dict)
    members: dict[str, dict[int, float]] = field(default_factory=dict)
    confusion: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


# --- reading a revision ----------------------------------------------------------------------


def _git(repo: Path, *args: str, check: bool = True) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise ReviewError(
            f"git {' '.join(args)}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else 'failed'}"
        )
    return res.stdout if res.returncode == 0 else ""


def resolve(repo: Path, rev: str) -> str:
    """A commit for `rev`: a branch, tag, sha, or a DVC experiment's name."""
    if rev == WORKSPACE:
        return rev
    sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).strip()
    if sha:
        return sha
    for line in _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps", check=False).splitlines():
        ref, obj = line.split()
        if ref.rsplit("/", 1)[-1] == rev:
            return obj
    raise ReviewError(
        f"{rev!r} is neither a git revision nor a DVC experiment of {repo} (`git log --oneline`, `dvc exp ls`)"
    )


class Reader:
    """Files of one revision (git show) or of the workspace."""

    def __init__(self, repo: Path, rev: str):
        self.repo, self.rev = repo, rev

    def text(self, path: str) -> str | None:
        if self.rev == WORKSPACE:
            p = self.repo / path
            return p.read_text(encoding="utf-8") if p.exists() else None
        res = subprocess.run(
            ["git", "-C", str(self.repo), "show", f"{self.rev}:{path}"], capture_output=True, text=True
        )
        return res.stdout if res.returncode == 0 else None

    def json(self, path: str) -> dict:
        t = self.text(path)
        return json.loads(t) if t else {}

    def listdir(self, directory: str) -> list[str]:
        if self.rev == WORKSPACE:
            d = self.repo / directory
            return sorted(p.relative_to(self.repo).as_posix() for p in d.glob("*")) if d.exists() else []
        out = _git(self.repo, "ls-tree", "--name-only", f"{self.rev}:{directory}", check=False)
        return sorted(f"{directory}/{n}" for n in out.split())


def _rel(p: Path) -> str:
    return p.as_posix()


def _csv(text: str | None) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text))) if text else []


def _series(rows: list[dict[str, str]], x: str = "iteration") -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        for k, v in r.items():
            if k != x and v not in ("", None):
                out.setdefault(k, {})[int(r[x])] = float(v)
    return out


def read_side(repo: Path, rev: str, label: str) -> Side:
    import yaml

    from sentiloop.report import convergence_from_metrics, convergence_from_rev

    r = Reader(repo, rev)
    side = Side(label=label)
    side.params = yaml.safe_load(r.text("params.yaml") or "{}") or {}
    side.classes = list((side.params.get("data") or {}).get("classes") or [])
    side.convergence = _series(_csv(r.text(_rel(L.convergence_plot))))
    if not side.convergence:  # a run from before metrics/plots/
        side.convergence = (
            convergence_from_metrics(repo / "metrics") if rev == WORKSPACE else convergence_from_rev(repo, rev)
        )
    side.members = _series(_csv(r.text(_rel(L.members_plot))))
    rows = _csv(r.text(_rel(L.confusion_plot)))
    if rows:
        classes = side.classes or sorted({x["actual"] for x in rows} | {x["predicted"] for x in rows})
        index = {c: i for i, c in enumerate(classes)}
        m = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for x in rows:
            if x["actual"] in index and x["predicted"] in index:
                m[index[x["actual"]], index[x["predicted"]]] += 1
        side.confusion, side.classes = m, classes
    for path in r.listdir(_rel(L.metrics / "iterations")):
        if path.endswith(".json"):
            for src, n in (r.json(path).get("corrections_by_source") or {}).items():
                side.sources[src] = side.sources.get(src, 0) + int(n)
    side.gate = r.json(_rel(L.gate_json))
    side.summary = r.json(_rel(L.summary))
    return side


# --- dvc's own diffs -------------------------------------------------------------------------


def _dvc() -> str:
    return shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")


def dvc_diff(repo: Path, what: str, base: str, target: str) -> str:
    """`dvc params|metrics diff <base> [<target>] --md`; the error line when DVC cannot."""
    cmd = [_dvc(), what, "diff", base, *([] if target == WORKSPACE else [target]), "--md"]
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or ["failed"])[-1]
        return f"_`dvc {what} diff` failed: {err}_"
    table = res.stdout.strip()
    return table if len(table.splitlines()) > 2 else f"_no {what} changed_"  # header + rule only


# --- figures ---------------------------------------------------------------------------------


def _plt():
    from sentiloop.report import _plt as report_plt

    return report_plt()


def figure_lines(sides: Sequence[Side], attr: str, title: str, path: Path) -> Path | None:
    """One panel per side, one line per series; shared y axis so the panels compare."""
    if not any(getattr(s, attr) for s in sides):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(sides), figsize=(6.5 * len(sides), 4), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], sides):
        data = getattr(s, attr)
        for name, series in sorted(data.items()):
            ks = sorted(series)
            ax.plot(ks, [series[k] for k in ks], marker="o", label=name)
        ax.set_title(f"{title}: {s.label}")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if data:
            ax.legend(fontsize=7)
            ax.set_xticks(sorted({k for v in data.values() for k in v}))
        else:
            ax.text(0.5, 0.5, "no data at this revision", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def figure_confusions(sides: Sequence[Side], path: Path) -> Path | None:
    if not any(s.confusion is not None for s in sides):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(sides), figsize=(4.8 * len(sides), 4.2), squeeze=False)
    for ax, s in zip(axes[0], sides):
        if s.confusion is None:
            ax.text(0.5, 0.5, "no confusion table", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        m = s.confusion
        ax.imshow(m, cmap="Blues")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black"
                )
        ax.set_xticks(range(len(s.classes)), s.classes, rotation=30)
        ax.set_yticks(range(len(s.classes)), s.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(f"test confusion: {s.label}")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


# --- the Markdown ----------------------------------------------------------------------------


def _gate_line(g: Mapping[str, Any]) -> str:
    from sentiloop.report import gate_sentence

    return gate_sentence(g) if g else "_no gate verdict (metrics/gate.json) at this revision_"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(x):
        return "" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def write(
    repo: str | Path, base: str, target: str = WORKSPACE, output: str | Path = "reports/review.md"
) -> dict[str, Any]:
    """Write the review Markdown (and its PNGs in <output stem>/); returns what it contains."""
    repo = Path(repo).resolve()
    if not (repo / ".git").exists() and not _git(repo, "rev-parse", "--git-dir", check=False):
        raise ReviewError(f"{repo} is not a git repository: review-report compares git revisions")
    base_sha, target_sha = resolve(repo, base), resolve(repo, target)
    out = Path(output)
    out = out if out.is_absolute() else repo / out
    images = out.parent / out.stem

    def label_of(rev, sha):
        return rev if sha == WORKSPACE else f"{rev} ({sha[:8]})"

    sides = [
        read_side(repo, base_sha, label_of(base, base_sha)),
        read_side(repo, target_sha, label_of(target, target_sha)),
    ]
    dvc_target = target_sha if target_sha != WORKSPACE else WORKSPACE
    params_md = dvc_diff(repo, "params", base_sha, dvc_target)
    metrics_md = dvc_diff(repo, "metrics", base_sha, dvc_target)
    figures = {
        "convergence": figure_lines(sides, "convergence", "convergence", images / "convergence.png"),
        "members": figure_lines(sides, "members", "test accuracy", images / "members.png"),
        "confusion": figure_confusions(sides, images / "confusion.png"),
    }

    def rel(p):
        return p.relative_to(out.parent).as_posix()

    md = [
        f"# Review: {sides[1].label} vs {sides[0].label}",
        "",
        "Written by `sentiloop review-report` (`make review`). Post it on a pull request with "
        f"`cml comment create {out.relative_to(repo).as_posix() if out.is_relative_to(repo) else out}`.",
        "",
    ]
    md += [
        "## Quality gate",
        "",
        f"- **{sides[0].label}**: {_gate_line(sides[0].gate)}",
        f"- **{sides[1].label}**: {_gate_line(sides[1].gate)}",
        "",
    ]
    g0, g1 = sides[0].gate, sides[1].gate
    if g0.get("f1") is not None and g1.get("f1") is not None:
        delta = float(g1["f1"]) - float(g0["f1"])
        md += [f"Gate test macro-F1 {'+' if delta >= 0 else ''}{delta:.4f} against the base.", ""]
    md += [
        "## Parameters (`dvc params diff`)",
        "",
        params_md,
        "",
        "## Metrics (`dvc metrics diff`)",
        "",
        metrics_md,
        "",
    ]
    md += ["## Figures (base left, this run right)", ""]
    titles = {
        "convergence": "Convergence",
        "members": "Test accuracy per member",
        "confusion": "Final ensemble, test confusion",
    }
    for key, png in figures.items():
        md += [
            f"### {titles[key]}",
            "",
            f"![{titles[key]}]({rel(png)})" if png else "_no data for this figure at either revision_",
            "",
        ]
    srcs = sorted(set(sides[0].sources) | set(sides[1].sources))
    md += ["## Label changes by source (all iterations)", ""]
    if srcs:
        rows = [
            [
                s,
                sides[0].sources.get(s, 0),
                sides[1].sources.get(s, 0),
                sides[1].sources.get(s, 0) - sides[0].sources.get(s, 0),
            ]
            for s in srcs
        ]
        rows.append(
            [
                "total",
                sum(sides[0].sources.values()),
                sum(sides[1].sources.values()),
                sum(sides[1].sources.values()) - sum(sides[0].sources.values()),
            ]
        )
        md += [_table(["source", sides[0].label, sides[1].label, "change"], rows), ""]
    else:
        md += ["_no per-iteration records (metrics/iterations/) at either revision_", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    return {
        "output": out,
        "figures": {k: v for k, v in figures.items() if v},
        "sides": sides,
        "params_diff": params_md,
        "metrics_diff": metrics_md,
    }
