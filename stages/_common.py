"""Shared start of every stage script: import this tree's `src/` (also inside `dvc exp` temp
copies, where an installed sentiloop would point at another checkout), work from the repository
root, load and validate params.yaml, and report a user error as one line (exit 2).

Deliberately small: its import closure (sentiloop.errors, .settings, .layout) is part of every
stage's, so it must not pull in the pipeline. SENTILOOP_DEBUG=1 shows tracebacks."""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sentiloop.errors import run_reporting  # noqa: E402
from sentiloop.layout import Layout  # noqa: E402
from sentiloop.settings import load  # noqa: E402


def args(description: str, *, k: bool = False, member: bool = False, final: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    if k:
        p.add_argument("--k", type=int, required=not final, help="iteration number (1-based)")
    if final:
        p.add_argument("--final", action="store_true", help="the last iteration's models (predict_final)")
    if member:
        p.add_argument("--member", required=True, help="ensemble member (lexicon, lstm, bilstm, bert)")
    return p.parse_args()


def run(step, show=print):
    """Validate params.yaml, run `step(settings, layout)` from the repository root, print
    `show(result)`; a SentiloopError (bad parameter, missing file, ...) is one line and exit 2."""
    os.chdir(ROOT)
    stage = Path(sys.argv[0]).stem

    def go():
        return step(load("params.yaml"), Layout(Path(".")))

    result = run_reporting(go, prog=f"stage {stage}")
    if show is not None:
        show(result)
    return result
