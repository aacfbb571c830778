"""The planted-noise quality benchmark: every arm on the same data, one table, one plot.

`bench/quality.py` (and `make bench`) is the command line; `run_quality` is what it calls and
what the CI test calls with tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from sentiloop.benchmark.data import THREE_CLASSES, BenchmarkDataError, SubsetSpec, build_benchmark_frame, find_nsmc
from sentiloop.benchmark.report import markdown_table, plot_iterations, replace_section
from sentiloop.benchmark.runner import REPO_ROOT, TOKEN_CACHE, machine_description, pretokenize, run_arm, write_workdir

SCHEDULES = ("constant", "linear", "curriculum", "class_balanced")
# Extra rows per schedule (--variant NAME=OVERRIDE,...): none by default, the configured loop
# already judges out-of-fold with the same number of folds as the cleanlab arm.
DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {}
SECTION = "bench:quality"


@dataclass
class QualityRun:
    subset: SubsetSpec = field(default_factory=SubsetSpec)
    members: tuple[str, ...] = ("lexicon",)
    schedules: tuple[str, ...] = SCHEDULES
    variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_VARIANTS))
    overrides: tuple[str, ...] = ()
    model_seed: int = 42
    cleanlab_folds: int = 5
    nsmc_path: str | None = None
    workdir: str = "bench/out/quality"
    isolate: bool = True
    token_cache: bool = True
    timeout_per_arm: float | None = None

    def arms(self) -> list[str]:
        return (
            ["none", "cleanlab_oof", "cleanlab_relabel", "cleanlab_prune"]
            + [f"sentiloop:{s}" for s in self.schedules]
            + [f"sentiloop:{s}@{v}" for v in self.variants for s in self.schedules]
            + ["oracle", "ceiling"]
        )

    def hydra_overrides(self) -> list[str]:
        members = ",".join(self.members)
        data = "nsmc3" if len(self.subset.classes) == 3 else "nsmc"
        return [f"data={data}", f"ensemble.members=[{members}]", f"seed={self.model_seed}", *self.overrides]


def run_quality(run: QualityRun, *, log=print) -> dict:
    nsmc = Path(run.nsmc_path) if run.nsmc_path else find_nsmc(REPO_ROOT)
    if nsmc is None or not nsmc.exists():
        raise BenchmarkDataError(
            "NSMC not found: expected ../shared/data/nsmc/nsmc_reviews.tsv.gz "
            "beside the repository (or pass --nsmc / set $SENTILOOP_NSMC)"
        )
    workdir = Path(run.workdir)
    t0 = time.perf_counter()
    frame = build_benchmark_frame(nsmc, run.subset)
    spec = {
        "subset": run.subset.to_dict(),
        "members": list(run.members),
        "overrides": run.hydra_overrides(),
        "model_seed": run.model_seed,
        "cleanlab_folds": run.cleanlab_folds,
        "nsmc": str(nsmc),
        "variants": {k: list(v) for k, v in run.variants.items()},
    }
    write_workdir(workdir, frame, spec)
    log(f"prepared {len(frame):,} rows in {time.perf_counter() - t0:.1f}s -> {workdir}")
    tokens = None
    cache = workdir / TOKEN_CACHE
    if cache.exists():
        cache.unlink()
    if run.token_cache:
        tokens = pretokenize(workdir, frame["text"].tolist(), "ko")
        log(
            f"tokenized {tokens['texts']:,} texts once in {tokens['seconds']:.1f}s "
            f"({tokens['texts'] / tokens['seconds']:,.0f}/s) into the token cache"
        )
    load_before = _loadavg()
    results: dict[str, dict] = {}
    for arm in run.arms():
        log(f"arm {arm} ...")
        results[arm] = run_arm(workdir, arm, timeout=run.timeout_per_arm, isolate=run.isolate)
        r = results[arm]
        log(
            f"  {arm}: label acc {r.get('label_accuracy')}, test F1 {r.get('test_macro_f1')}, "
            f"{r['wall_s']:.1f}s, {r['peak_rss_mb']:.0f} MiB"
        )
    rows = _table_rows(results)
    summary = {
        "spec": spec,
        "rows": rows,
        "tokens": tokens,
        "oof": results.get("cleanlab_oof"),
        "machine": machine_description(),
        "load_before": load_before,
        "load_after": _loadavg(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    (workdir / "results.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def _table_rows(results: dict[str, dict]) -> list[dict]:
    """The table's rows; the cleanlab rows carry the shared out-of-fold step's time and memory."""
    oof = results.get("cleanlab_oof")
    rows = []
    for arm, r in results.items():
        if arm == "cleanlab_oof":
            continue
        r = dict(r)
        if arm.startswith("cleanlab_") and oof:
            r["wall_s"] = r["wall_s"] + oof["wall_s"]
            r["peak_rss_mb"] = max(r["peak_rss_mb"], oof["peak_rss_mb"])
        rows.append(r)
    return rows


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_report(
    summary: dict,
    *,
    doc: str | Path,
    plot: str | Path,
    command: str,
    section: str = SECTION,
    heading: str | None = None,
) -> None:
    rows = summary["rows"]
    plot = Path(plot)
    plot_iterations(rows, plot, title=_plot_title(summary))
    doc = Path(doc)
    rel_plot = os.path.relpath(plot.resolve(), doc.resolve().parent)
    replace_section(
        doc,
        section,
        render_section(summary, command=command, plot_ref=rel_plot),
        heading=heading or "Label quality: planted noise on NSMC vs cleanlab and the gold ceiling",
    )


def _plot_title(summary: dict) -> str:
    s = summary["spec"]["subset"]
    noise = f"symmetric {s['noise_rate']:.0%}" if s["noise_kind"] == "symmetric" else f"matrix {s['noise_matrix']}"
    return (
        f"NSMC {s['n_train']:,} train / {s['n_test']:,} test, {noise} noise, "
        f"members: {', '.join(summary['spec']['members'])}"
    )


def render_section(summary: dict, *, command: str, plot_ref: str) -> str:
    spec, s = summary["spec"], summary["spec"]["subset"]
    noise = (
        f"symmetric, rate {s['noise_rate']}"
        if s["noise_kind"] == "symmetric"
        else f"class-conditional matrix (rows = true, cols = noisy) {s['noise_matrix']}"
    )
    lines = [
        f"Measured {summary['date']} on {summary['machine']}. Load average before/after: "
        f"{summary['load_before']} / {summary['load_after']} (the machine is shared with other "
        f"jobs: wall times are under contention).",
        "",
        "```",
        command,
        "```",
        "",
        f"- Corpus: NSMC (`{Path(spec['nsmc']).name}`), {len(s['classes'])} classes (ratings 1-4 negative, {'5-8 neutral, ' if len(s['classes']) == 3 else ''}9-10 "
        f"positive{'' if len(s['classes']) == 3 else ', 5-8 dropped'}), {'balanced per class' if s['balanced'] else 'natural class mix'}; "
        f"{s['n_train']:,} train + {s['n_test']:,} test rows drawn with seed {s['seed']}"
        + (f" from the first {s['pool_rows']:,} raw rows." if s.get("pool_rows") else " from the whole file."),
        f"- Noise: {noise}, planted on train rows only with seed {s['noise_seed']}; test labels "
        f"are the true ones. `gold_label` is used for scoring only.",
        f"- Members: {', '.join(spec['members'])} (config from conf/, overrides "
        f"`{' '.join(spec['overrides'])}`), model seed {spec['model_seed']}; every arm fits the "
        f"same members with the same config.",
        f"- cleanlab {_cleanlab_version()}: `find_label_issues` (prune_by_noise_rate) on "
        f"{spec['cleanlab_folds']}-fold out-of-fold ensemble probabilities; its rows include the "
        f"shared out-of-fold step's time and memory.",
        "- A correction is a changed train label; precision = changed rows whose new label is "
        "gold / changed rows; recall = planted errors repaired / planted errors. For pruning, "
        "the correction is a removal and label accuracy is over the rows kept.",
        "- Wall time: each arm in its own subprocess, interpreter start and imports included. "
        "Peak RSS: that subprocess's VmHWM (/proc/self/status).",
        _tokens_line(summary.get("tokens")),
        "",
        markdown_table(summary["rows"]),
        "",
    ]
    oof = summary.get("oof")
    if oof:
        lines += [
            f"cleanlab flagged {oof['n_flagged']:,} rows (precision {oof['flag_precision']:.3f}, "
            f"recall {oof['flag_recall']:.3f} against the planted flips).",
            "",
        ]
    traces = [r for r in summary["rows"] if r.get("trace")]
    variants = summary["spec"].get("variants") or {}
    if variants:
        lines += [
            "Variants (extra loop overrides, same data and members): "
            + "; ".join(f"`{k}`: `{' '.join(v)}`" for k, v in variants.items())
            + ".",
            "",
        ]
    if traces:
        lines += [
            "<details><summary>Per iteration (iteration 0 = members trained on the noisy labels)</summary>",
            "",
            "| Loop | Iteration | Threshold | Changed | Train label acc. | Test macro-F1 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in traces:
            for t in r["trace"]:
                thr = t.get("threshold")
                f1 = t.get("test_macro_f1")
                lines.append(
                    f"| {r['arm'].split(':', 1)[1]} | {t['iteration']} | "
                    f"{'–' if thr is None else f'{thr:.3f}'} | {t.get('n_changed', 0):,} | "
                    f"{t['label_accuracy']:.4f} | {'–' if f1 is None else f'{f1:.4f}'} |"
                )
        lines += ["", "</details>", ""]
    lines += [f"![label accuracy and test macro-F1 per iteration]({plot_ref})", ""]
    return "\n".join(lines)


def _tokens_line(tokens: dict | None) -> str:
    if not tokens:
        return "- No token cache: every fit and predict tokenized its texts with Kiwi."
    return (
        f"- Tokens: the {tokens['texts']:,} texts were tokenized once with Kiwi "
        f"({tokens['seconds']:.1f} s, {tokens['texts'] / tokens['seconds']:,.0f} texts/s, not in "
        f"any arm's wall time) into an on-disk token cache that every arm reads "
        f"(sentiloop.text.token_cache); the arms' wall times are model work."
    )


def _cleanlab_version() -> str:
    try:
        from importlib.metadata import version

        return version("cleanlab")
    except Exception:  # pragma: no cover - cleanlab is a dependency
        return "?"


def parse_matrix(text: str) -> list[list[float]]:
    """'0.7,0.3;0.2,0.8' -> [[0.7, 0.3], [0.2, 0.8]] (rows = true class)."""
    try:
        return [[float(x) for x in row.split(",")] for row in text.split(";")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"matrix must look like '0.7,0.3;0.2,0.8', got {text!r}")


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """'long=loop.max_iterations=5,loop.cross_fit=3' -> ('long', ('loop.max_iterations=5', 'loop.cross_fit=3'))."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest or "@" in name or ":" in name:
        raise argparse.ArgumentTypeError(f"variant must look like NAME=key=value[,key=value], got {text!r}")
    return name, tuple(o.strip() for o in rest.split(",") if o.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__)
    p.add_argument("--train", type=int, default=20_000, help="train rows (noise planted here)")
    p.add_argument("--test", type=int, default=5_000, help="test rows (clean)")
    p.add_argument("--subset-seed", type=int, default=13)
    p.add_argument("--imbalanced", action="store_true", help="keep NSMC's natural class mix")
    p.add_argument(
        "--three-class",
        action="store_true",
        help="nsmc3: ratings 1-4 negative, 5-8 neutral, 9-10 positive (data=nsmc3)",
    )
    p.add_argument(
        "--pool-rows",
        type=int,
        default=None,
        help="draw from the first N raw rows only (quick runs); default: the whole file",
    )
    p.add_argument("--noise", choices=("symmetric", "matrix"), default="symmetric")
    p.add_argument("--rate", type=float, default=0.3, help="symmetric flip rate")
    p.add_argument(
        "--matrix",
        type=parse_matrix,
        default=None,
        help="class-conditional noise matrix T[true,noisy], e.g. '0.8,0.2;0.4,0.6'",
    )
    p.add_argument("--noise-seed", type=int, default=17)
    p.add_argument("--model-seed", type=int, default=42)
    p.add_argument("--members", default="lexicon", help="comma-separated ensemble members")
    p.add_argument("--schedules", default=",".join(SCHEDULES))
    p.add_argument("--folds", type=int, default=5, help="cleanlab out-of-fold folds")
    p.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for every arm, e.g. loop.max_iterations=5"
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDE[,OVERRIDE...]",
        help="also run every schedule with these loop overrides, e.g. "
        "'oof=loop.cross_fit=5,loop.max_iterations=5' (replaces the default variants: "
        + "; ".join(f"{k}: {' '.join(v)}" for k, v in DEFAULT_VARIANTS.items())
        + ")",
    )
    p.add_argument("--no-variants", action="store_true", help="only the configured loop, per schedule")
    p.add_argument("--nsmc", default=None, help="path to nsmc_reviews.tsv.gz")
    p.add_argument("--workdir", default="bench/out/quality")
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--plot", default="docs/img/bench_quality.png")
    p.add_argument("--no-doc", action="store_true", help="print the table, do not touch docs/")
    p.add_argument(
        "--section", default=SECTION, help="name of the docs/benchmarks.md section to (re)write, for a second table"
    )
    p.add_argument("--heading", default=None, help="heading of a new section")
    p.add_argument(
        "--no-token-cache", action="store_true", help="tokenize inside every fit/predict instead of once per run"
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run arms in this process (faster, but peak memory is then cumulative)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.noise == "matrix" and args.matrix is None:
        build_parser().error("--noise matrix needs --matrix")
    run = QualityRun(
        subset=SubsetSpec(
            n_train=args.train,
            n_test=args.test,
            seed=args.subset_seed,
            balanced=not args.imbalanced,
            noise_kind=args.noise,
            noise_rate=args.rate,
            noise_matrix=args.matrix,
            noise_seed=args.noise_seed,
            pool_rows=args.pool_rows,
            **({"classes": THREE_CLASSES} if args.three_class else {}),
        ),
        members=tuple(m.strip() for m in args.members.split(",") if m.strip()),
        schedules=tuple(s.strip() for s in args.schedules.split(",") if s.strip()),
        variants=(
            {}
            if args.no_variants
            else dict(parse_variant(v) for v in args.variant)
            if args.variant
            else dict(DEFAULT_VARIANTS)
        ),
        overrides=tuple(args.override),
        model_seed=args.model_seed,
        cleanlab_folds=args.folds,
        nsmc_path=args.nsmc,
        workdir=args.workdir,
        isolate=not args.in_process,
        token_cache=not args.no_token_cache,
    )
    summary = run_quality(run)
    command = "python bench/quality.py" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv))
    print(markdown_table(summary["rows"]))
    if not args.no_doc:
        write_report(summary, doc=args.doc, plot=args.plot, command=command, section=args.section, heading=args.heading)
        print(f"wrote {args.doc} and {args.plot}")
    return 0
