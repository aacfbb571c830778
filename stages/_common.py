"""Shared start of every stage script: import this tree's `src/` (also inside `dvc exp` temp
copies, where an installed sentiloop would point at another checkout), work from the repository
root, load and validate params.yaml, and report a user error as one line (exit 2).

Logs go to stderr, so `dvc repro` shows them: sentiloop's own loggers at INFO (relabel's
per-iteration summary, the gate's attempts), other libraries at WARNING; SENTILOOP_LOG_LEVEL
(DEBUG, INFO, WARNING, ERROR) sets sentiloop's level, and DEBUG or ERROR the libraries' too.
TensorFlow's own start-up lines are silenced before anything can import it (TF_CPP_MIN_LOG_LEVEL=2
unless already set; the absl ones, which ignore it, are dropped by models.lstm's TF import).
Progress bars (a terminal only): sentiloop.progress.

Deliberately small: its import closure (sentiloop.errors, .settings, .layout) is part of every
stage's, so it must not pull in the pipeline. SENTILOOP_DEBUG=1 shows tracebacks."""

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything loads TensorFlow (the LSTM member)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sentiloop.errors import SettingsError, run_reporting  # noqa: E402
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


LOG_ENV = "SENTILOOP_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging() -> None:
    """Stderr logging for a stage: sentiloop at $SENTILOOP_LOG_LEVEL (INFO), the rest at WARNING
    (DEBUG or ERROR applies to both). An unknown level is a one-line SettingsError."""
    name = os.environ.get(LOG_ENV, "").strip().upper() or "INFO"
    if name not in LOG_LEVELS:
        raise SettingsError(f"${LOG_ENV} = {name!r}: must be one of {', '.join(LOG_LEVELS)}")
    level = logging.getLevelName(name)
    logging.basicConfig(
        stream=sys.stderr,
        level=level if name in ("DEBUG", "ERROR") else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("sentiloop").setLevel(level)


def run(step, show=print):
    """Validate params.yaml, run `step(settings, layout)` from the repository root, print
    `show(result)`; a SentiloopError (bad parameter, missing file, ...) is one line and exit 2."""
    os.chdir(ROOT)
    stage = Path(sys.argv[0]).stem

    def go():
        configure_logging()
        return step(load("params.yaml"), Layout(Path(".")))

    result = run_reporting(go, prog=f"stage {stage}")
    if show is not None:
        show(result)
    return result
