"""Compose params.yaml from conf/ exactly as `dvc exp run` does (DVC's own Hydra helper), for
`dvc repro`, which does not compose. Usage: python -m sentiloop.config [override ...]

Composition validates every parameter (hydra_plugins/chain.py -> sentiloop.settings): a bad one
prints one line and exits 2, and params.yaml is left as it was."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def compose(root: Path, overrides: list[str], output: Path | None = None) -> Path:
    """Write the composition to `output` (default root/params.yaml) only once it succeeded."""
    from dvc.utils.hydra import compose_and_dump

    from sentiloop.settings import composition_error

    output = Path(output or root / "params.yaml")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".params.") as tmp:
        staged = Path(tmp) / output.name
        try:
            compose_and_dump(staged, str(Path(root).resolve() / "conf"), None, "config", str(root), overrides)
        except Exception as e:
            raise composition_error(e) from None
        staged.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    from sentiloop.errors import run_reporting

    argv = sys.argv[1:] if argv is None else argv
    out = run_reporting(lambda: compose(Path.cwd(), argv), prog="make params")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
