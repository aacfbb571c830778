"""Run every arm in its own subprocess, so each arm's wall time and peak memory are its own.

The parent prepares the work directory once (data.parquet: the seeded subset with planted
noise; spec.json: sizes, seeds, overrides), then starts `python -m sentiloop.benchmark.runner
<workdir> <arm>` per arm. The child composes the config, runs the arm, and writes
arms/<arm>.json with its own peak resident memory (VmHWM: the high-water mark of
the whole process, native allocations such as Kiwi's and torch's included). The parent adds the
wall time it measured around the child (interpreter start and imports included: what a user
waits for).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

DATA_FILE = "data.parquet"
TOKEN_CACHE = "tokens.sqlite"
SPEC_FILE = "spec.json"
ARMS_DIR = "arms"
SRC_ROOT = Path(__file__).resolve().parents[2]
REPO_ROOT = SRC_ROOT.parent


class ArmFailed(RuntimeError):
    pass


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    VmHWM from /proc/self/status: the high-water mark of this process image. getrusage's
    ru_maxrss is not used on Linux because it survives fork+exec, so a child started by a big
    parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def write_workdir(workdir: Path, frame: pd.DataFrame, spec: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ARMS_DIR).mkdir(exist_ok=True)
    frame.to_parquet(workdir / DATA_FILE, index=False)
    (workdir / SPEC_FILE).write_text(json.dumps(spec, indent=1, ensure_ascii=False))


def arm_overrides(spec: dict, arm: str) -> list[str]:
    """Overrides for an arm: the run's, plus `schedule=` and a variant's for sentiloop arms
    (`sentiloop:<schedule>` or `sentiloop:<schedule>@<variant>`)."""
    overrides = list(spec.get("overrides", []))
    if arm.startswith("sentiloop:"):
        schedule, _, variant = arm.split(":", 1)[1].partition("@")
        overrides.append(f"schedule={schedule}")
        if variant:
            try:
                overrides += list(spec["variants"][variant])
            except KeyError:
                raise ValueError(f"arm {arm!r}: no variant {variant!r} in the run spec") from None
    return overrides


def child_env(workdir: Path | None = None) -> dict:
    env = dict(os.environ)
    if workdir is not None and (Path(workdir) / TOKEN_CACHE).exists():
        from sentiloop.text.token_cache import ENV_VAR

        env[ENV_VAR] = str((Path(workdir) / TOKEN_CACHE).resolve())
    paths = [str(SRC_ROOT), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # the machine has 2 cores shared with others: never let a library take more
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env.setdefault(var, "2")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("DVCLIVE_TEST", "true")
    return env


def run_arm(workdir: Path, arm: str, *, timeout: float | None = None, isolate: bool = True) -> dict:
    """Run one arm (in a subprocess unless isolate=False) and return its result dict."""
    workdir = Path(workdir)
    out = workdir / ARMS_DIR / f"{_safe(arm)}.json"
    if out.exists():
        out.unlink()
    start = time.perf_counter()
    if isolate:
        proc = subprocess.run(
            [sys.executable, "-m", "sentiloop.benchmark.runner", str(workdir), arm],
            env=child_env(workdir),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not out.exists():
            raise ArmFailed(f"arm {arm!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    else:
        from sentiloop.text.token_cache import use_token_cache

        cache = workdir / TOKEN_CACHE
        if cache.exists():
            with use_token_cache(cache):
                child_main([str(workdir), arm])
        else:
            child_main([str(workdir), arm])
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - start
    out.write_text(json.dumps(result, indent=1))
    return result


def pretokenize(workdir: Path, texts, language: str, negation: bool = True) -> dict:
    """Fill the work directory's token cache once (Kiwi is the slow part of every member)."""
    from sentiloop.text.token_cache import use_token_cache
    from sentiloop.text.tokenize import tokenize_many

    start = time.perf_counter()
    with use_token_cache(Path(workdir) / TOKEN_CACHE) as cache:
        n = sum(1 for _ in tokenize_many(texts, language, negation=negation))
        stored = len(cache)
    return {"texts": n, "distinct": stored, "seconds": time.perf_counter() - start}


def _safe(arm: str) -> str:
    return arm.replace(":", "__")


def child_main(argv: Sequence[str]) -> None:
    from sentiloop.benchmark.arms import ArmContext, get_arm
    from sentiloop.settings import compose_settings

    workdir, arm = Path(argv[0]), argv[1]
    spec = json.loads((workdir / SPEC_FILE).read_text())
    frame = pd.read_parquet(workdir / DATA_FILE)
    cfg = compose_settings(arm_overrides(spec, arm))
    ctx = ArmContext(frame, cfg, spec, workdir)
    t0 = time.perf_counter()
    result = get_arm(arm)(ctx)
    result.update(
        {
            "arm": arm,
            "run_s": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb(),
            "members": cfg.members,
            "schedule": cfg.schedule.name if arm.startswith("sentiloop:") else None,
        }
    )
    (workdir / ARMS_DIR / f"{_safe(arm)}.json").write_text(json.dumps(result, indent=1))


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


if __name__ == "__main__":
    child_main(sys.argv[1:])
