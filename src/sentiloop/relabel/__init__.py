"""LLM relabeling of the rows the ensemble is unsure about or disagrees on.

`answer_queue(queue, llm_cfg, classes, iteration=, cache_dir=, gold_path=)` is the one entry point
the pipeline calls; providers (gemini, openai_compatible, simulated) are chosen by `llm.provider`
and imported only when chosen.
"""

from .config import CACHE_ENV, ConfigError, LLMConfig, cache_dir_for, parse_config
from .runner import ANSWER_COLUMNS, STATUSES, answer_queue, empty_answers

__all__ = [
    "ANSWER_COLUMNS",
    "CACHE_ENV",
    "STATUSES",
    "ConfigError",
    "LLMConfig",
    "answer_queue",
    "cache_dir_for",
    "empty_answers",
    "parse_config",
    "applicable_answers",
]


def applicable_answers(answers, min_confidence: float):
    """The answers the correct stage may apply: answered or cached, confidence >= the bar."""
    ok = answers["status"].isin(["answered", "cached"]) & answers["llm_label"].notna()
    return answers[ok & (answers["llm_confidence"] >= float(min_confidence))]
