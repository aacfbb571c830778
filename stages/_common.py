"""Shared start of every stage script: import this tree's `src/` (also inside `dvc exp` temp
copies, where an installed sentiloop would point at another checkout) and read params.yaml."""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sentiloop.pipeline import load_params  # noqa: E402


def params():
    return load_params(ROOT / "params.yaml")


def iteration_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--k", type=int, required=True, help="iteration number (1-based)")
    p.add_argument("--prev", required=True, help="previous iteration's name (it0, it1, ...)")
    p.add_argument("--member", help="ensemble member (retrain only)")
    return p.parse_args()
