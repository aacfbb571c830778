"""Compose params.yaml from conf/ exactly as `dvc exp run` does (DVC's own Hydra helper), for
`dvc repro`, which does not compose. Usage: python -m sentiloop.config [override ...]"""
from __future__ import annotations

import sys
from pathlib import Path


def compose(root: Path, overrides: list[str], output: Path | None = None) -> Path:
    from dvc.utils.hydra import compose_and_dump
    output = output or root / "params.yaml"
    compose_and_dump(output, str(root / "conf"), None, "config", str(root), overrides)
    return output


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = compose(Path.cwd(), argv)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
