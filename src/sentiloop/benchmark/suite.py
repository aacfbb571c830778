"""The correction issue's bars in one command: every planted-noise setting x several noise
seeds, the same arms each time (no correction, cleanlab relabel / prune with the same members
and folds, the loop at its defaults, the gold ceiling), mean ± sd per setting.

`bench/suite.py` (and `make bench`) is the command line. Each (setting, seed) is one
`run_quality` run in its own work directory; the table is rebuilt from their results.json, so
an interrupted suite resumes where it stopped (--resume).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from sentiloop.benchmark.data import THREE_CLASSES, SubsetSpec
from sentiloop.benchmark.quality import QualityRun, run_quality
from sentiloop.benchmark.report import replace_section
from sentiloop.benchmark.runner import machine_description, run_arm

SECTION = "bench:suite"


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    kind: str = "symmetric"
    rate: float = 0.3
    matrix: tuple | None = None
    three_class: bool = False

    def subset(self, n_train: int, n_test: int, seed: int) -> SubsetSpec:
        return SubsetSpec(
            n_train=n_train,
            n_test=n_test,
            noise_kind=self.kind,
            noise_rate=self.rate,
            noise_matrix=[list(r) for r in self.matrix] if self.matrix else None,
            noise_seed=seed,
            **({"classes": THREE_CLASSES} if self.three_class else {}),
        )


SETTINGS = {
    s.name: s
    for s in [
        Setting("sym30", "30% symmetric"),
        Setting("sym10", "10% symmetric", rate=0.1),
        Setting("sym0", "no noise", rate=0.0),
        Setting(
            "neg_to_pos", "asymmetric: 30% of negatives labelled positive", "matrix", matrix=((0.7, 0.3), (0.0, 1.0))
        ),
        Setting(
            "pos_to_neg", "asymmetric: 30% of positives labelled negative", "matrix", matrix=((1.0, 0.0), (0.3, 0.7))
        ),
        Setting(
            "nsmc3",
            "nsmc3, neighbour confusion [[.8,.2,0],[.15,.7,.15],[0,.2,.8]]",
            "matrix",
            matrix=((0.8, 0.2, 0.0), (0.15, 0.7, 0.15), (0.0, 0.2, 0.8)),
            three_class=True,
        ),
    ]
}
ARMS = [
    ("none", "no correction"),
    ("cleanlab_relabel", "cleanlab relabel"),
    ("cleanlab_prune", "cleanlab prune"),
    ("sentiloop:linear", "sentiloop (defaults)"),
    ("oracle", "Bayes oracle relabel"),
    ("ceiling", "gold ceiling"),
]


def run_suite(
    settings: Sequence[str],
    seeds: Sequence[int],
    *,
    n_train: int,
    n_test: int,
    members: tuple[str, ...],
    workdir: Path,
    resume: bool,
    rerun: Sequence[str] = (),
    log=print,
) -> dict:
    results: dict[str, dict[int, dict]] = {}
    for name in settings:
        setting = SETTINGS[name]
        for seed in seeds:
            wd = workdir / f"{name}_s{seed}"
            done = wd / "results.json"
            if not (resume and done.exists()):
                log(f"== {name} seed {seed}")
                run_quality(
                    QualityRun(
                        subset=setting.subset(n_train, n_test, seed),
                        members=members,
                        schedules=("linear",),
                        variants={},
                        workdir=str(wd),
                    ),
                    log=log,
                )
            elif rerun:
                rerun_arms(wd, rerun, log=log)
            rows = json.loads(done.read_text())["rows"]
            results.setdefault(name, {})[seed] = {r["arm"]: r for r in rows}
    return results


RERUNNABLE = ("none", "oracle", "ceiling")


def rerun_arms(workdir: Path, arms: Sequence[str], *, log=print) -> None:
    """Run `arms` again in a finished work directory (same data, token cache and seeds) and put
    their rows into its results.json in place of the old ones: after a change to the loop, only
    the loop's arm needs recomputing. The cleanlab arms share one out-of-fold step, so they are
    not rerun one by one."""
    bad = [a for a in arms if a not in RERUNNABLE and not a.startswith("sentiloop:")]
    if bad:
        raise ValueError(f"cannot rerun {bad}: choose among {', '.join(RERUNNABLE)} and sentiloop:<schedule>")
    done = workdir / "results.json"
    summary = json.loads(done.read_text())
    rows = list(summary["rows"])
    for arm in arms:
        log(f"== rerun {arm} in {workdir}")
        row = run_arm(workdir, arm)
        at = [i for i, r in enumerate(rows) if r["arm"] == arm]
        if at:
            rows[at[0]] = row
        else:  # a new arm goes before the gold ceiling, as in a fresh run
            ends = [i for i, r in enumerate(rows) if r["arm"] == "ceiling"]
            rows.insert(ends[0] if ends else len(rows), row)
    summary["rows"] = rows
    summary.setdefault("reruns", []).append(
        {"arms": list(arms), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    )
    done.write_text(json.dumps(summary, indent=1, ensure_ascii=False))


def _stat(values: list[float]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    return f"{np.mean(v):.3f}" + (f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else "")


def render(results: dict, seeds: Sequence[int], members: Sequence[str], command: str, n_train: int, n_test: int) -> str:
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} on {machine_description()} "
        "(shared with other jobs: wall times are under contention).",
        "",
        "```",
        command,
        "```",
        "",
        f"NSMC {n_train:,} train / {n_test:,} test (balanced), members: {', '.join(members)}; noise seeds "
        f"{', '.join(map(str, seeds))} (mean ± sd over seeds where more than one ran). Label accuracy: "
        "all train rows vs gold (for prune: the rows kept). Precision / recall: of the changed labels.",
        "",
        "| Setting | Arm | Label acc. | Training-label acc. | Flip precision | Flip recall | Test acc. | Wall (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_seed in results.items():
        for arm, label in ARMS:
            rows = [by_seed[s][arm] for s in by_seed if arm in by_seed[s]]
            if not rows:
                continue
            lines.append(
                f"| {SETTINGS[name].description} | {label} | {_stat([r.get('label_accuracy') for r in rows])} | "
                f"{_stat([r.get('training_label_accuracy', r.get('label_accuracy')) for r in rows])} | "
                f"{_stat([r.get('correction_precision') for r in rows])} | "
                f"{_stat([r.get('correction_recall') for r in rows])} | "
                f"{_stat([r.get('test_accuracy') for r in rows])} | {_stat([r.get('wall_s') for r in rows])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--seeds", default="17,18,19")
    p.add_argument("--train", type=int, default=20_000)
    p.add_argument("--test", type=int, default=5_000)
    p.add_argument("--members", default="lexicon")
    p.add_argument("--workdir", default="bench/out/suite")
    p.add_argument("--resume", action="store_true", help="reuse finished (setting, seed) runs")
    p.add_argument(
        "--rerun",
        default="",
        help="with --resume: comma-separated arms to recompute in finished runs (e.g. sentiloop:linear,oracle)",
    )
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        p.error(f"unknown settings {unknown}; choose among {', '.join(SETTINGS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    members = tuple(m.strip() for m in args.members.split(",") if m.strip())
    results = run_suite(
        settings,
        seeds,
        n_train=args.train,
        n_test=args.test,
        members=members,
        workdir=Path(args.workdir),
        resume=args.resume,
        rerun=[a.strip() for a in args.rerun.split(",") if a.strip()],
    )
    text = render(
        results,
        seeds,
        members,
        "python bench/suite.py " + " ".join(shlex.quote(a) for a in argv),
        args.train,
        args.test,
    )
    print(text)
    if not args.no_doc:
        replace_section(
            Path(args.doc), SECTION, text, heading="The correction issue's bars: every noise setting, several seeds"
        )
    return 0
