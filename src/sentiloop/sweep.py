"""`make sweep`: queue one DVC experiment per combination, each named after what it varies.

    python -m sentiloop.sweep schedule=constant,linear loop.max_iterations=3,5 [--set k=v ...] [--dry-run]

queues four experiments, `schedule-constant_max_iterations-3` ... `schedule-linear_max_iterations-5`,
with `dvc exp run --queue -n <name> -S <override> ...`; `--set` overrides are applied to every
experiment and left out of the names (they do not vary). Plain `dvc exp run --queue -S 'a=x,y'`
names them at random (`bardy-runs`), which is what `dvc plots diff` legends and `dvc exp show`
rows then say. Values are Hydra overrides: a comma separates choices except inside brackets, so
`ensemble.members=[lexicon],[lexicon,bert]` is two choices. A bad override is refused by the first
`dvc exp run` (composition validates every parameter) before anything is queued after it.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import subprocess
import sys
from typing import Sequence

from sentiloop.errors import SentiloopError

MAX_NAME = 100  # git refs allow more; `dvc exp show` columns do not


class SweepError(SentiloopError, ValueError):
    pass


def split_choices(values: str) -> list[str]:
    """`a,b,[c,d]` -> ['a', 'b', '[c,d]']: commas inside brackets or braces do not split."""
    out, depth, cur = [], 0, ""
    for ch in values:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
            if depth < 0:
                raise SweepError(f"unbalanced brackets in {values!r}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise SweepError(f"unbalanced brackets in {values!r}")
    out.append(cur)
    if any(not v.strip() for v in out):
        raise SweepError(f"an empty choice in {values!r}")
    return [v.strip() for v in out]


def parse(axes: Sequence[str]) -> list[tuple[str, list[str]]]:
    """['schedule=a,b', 'loop.max_iterations=3'] -> [('schedule', ['a', 'b']), ('loop.max_iterations', ['3'])]."""
    out = []
    for axis in axes:
        key, sep, values = axis.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[+~]?[A-Za-z_][\w./@-]*", key.strip()):
            raise SweepError(f"{axis!r}: expected key=value[,value...] (a Hydra override)")
        out.append((key.strip(), split_choices(values)))
    keys = [k for k, _ in out]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise SweepError(f"{dup} is swept twice: give its choices once, comma-separated")
    return out


def _slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._]+", "-", text)).strip("-.") or "x"


GENERIC = {"name", "value", "type", "kind", "strategy"}  # say nothing alone: schedule.name -> schedule


def short_key(key: str) -> str:
    """The part of a key that names it: its last part (`loop.max_iterations` -> max_iterations),
    or the one before a generic last part (`schedule.name` -> schedule)."""
    parts = [p for p in key.lstrip("+~").replace("/", ".").split(".") if p]
    while len(parts) > 1 and parts[-1] in GENERIC:
        parts.pop()
    return parts[-1]


def name_of(choice: Sequence[tuple[str, str]], varied: set[str]) -> str:
    """The experiment's name: `<short key>-<value>` for each varied key, joined by `_`."""
    parts = [f"{_slug(short_key(key))}-{_slug(value)}" for key, value in choice if key in varied]
    return "_".join(parts)[:MAX_NAME] or "baseline"


def plan(axes: Sequence[str], fixed: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """(name, overrides) per experiment, in the order they are queued."""
    parsed = parse(axes)
    for f in fixed:
        parse([f])  # same syntax check
    if not parsed:
        raise SweepError("nothing to sweep: give at least one key=value[,value...]")
    varied = {k for k, vs in parsed if len(vs) > 1} or {k for k, _ in parsed}
    runs, seen = [], {}
    for combo in itertools.product(*[[(k, v) for v in vs] for k, vs in parsed]):
        name = name_of(combo, varied)
        if name in seen:  # two values that slug alike: keep both, numbered
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        else:
            seen[name] = 1
        runs.append((name, [*fixed, *[f"{k}={v}" for k, v in combo]]))
    return runs


def command(name: str, overrides: Sequence[str]) -> list[str]:
    cmd = ["dvc", "exp", "run", "--queue", "-n", name]
    for o in overrides:
        cmd += ["-S", o]
    return cmd


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sentiloop.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("axes", nargs="+", help="key=v1,v2,... (Hydra overrides; each combination is one experiment)")
    ap.add_argument(
        "--set",
        dest="fixed",
        action="append",
        default=[],
        help="an override for every experiment, not part of the names (repeatable)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the dvc commands, queue nothing")
    args = ap.parse_args(argv)
    from sentiloop.errors import run_reporting

    def go() -> int:
        runs = plan(args.axes, [f for fs in args.fixed for f in fs.split()])
        for name, overrides in runs:
            cmd = command(name, overrides)
            print(" ".join(shlex.quote(c) for c in cmd), flush=True)
            if not args.dry_run:
                res = subprocess.run(cmd)
                if res.returncode != 0:
                    raise SweepError(
                        f"`{' '.join(cmd)}` failed (exit {res.returncode}); "
                        "experiments queued before it stay queued (`dvc queue status`)"
                    )
        if not args.dry_run:
            print(
                f"queued {len(runs)} experiment(s); run them with `dvc queue start`, then "
                "`dvc plots diff $(dvc exp ls --name-only)`"
            )
        return 0

    return int(run_reporting(go, prog="sweep") or 0)


if __name__ == "__main__":
    sys.exit(main())
