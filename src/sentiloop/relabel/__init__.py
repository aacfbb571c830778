"""Relabeling of the rows the ensemble is unsure about or disagrees on, by an annotator (LLM)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

ANSWER_COLUMNS = ["id", "llm_label", "llm_confidence", "rationale", "provider", "model", "simulated", "status"]


def answer_queue(queue: pd.DataFrame, llm_cfg: dict, classes: list[str], *, iteration: int,
                 cache_dir: Path, gold_path: Path | None = None) -> tuple[pd.DataFrame, dict]:
    provider = (llm_cfg or {}).get("provider", "none")
    if provider == "none":
        return pd.DataFrame(columns=ANSWER_COLUMNS), {"provider": "none", "llm_used": 0, "requests": 0,
                                                      "queued": int(len(queue))}
    raise ValueError(f"unknown llm.provider {provider!r}")
