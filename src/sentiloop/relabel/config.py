"""The `llm` section: sentiloop.settings.llm.LLM, validated with the rest of params.yaml.

The API key itself is never part of the config: only the *names* of the environment variables
that may hold it. This module adds where the response cache lives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from sentiloop.errors import SettingsError as ConfigError
from sentiloop.settings._base import validate_section
from sentiloop.settings.llm import LLM, PROVIDERS

LLMConfig = LLM

__all__ = ["CACHE_ENV", "ConfigError", "LLMConfig", "PROVIDERS", "cache_dir_for", "parse_config", "resolve_cache_dir"]


def parse_config(raw: LLM | Mapping[str, Any]) -> LLM:
    """The typed `llm` section (a plain mapping is validated as params.yaml's would be: complete,
    no unknown keys; sentiloop.settings.llm_config(provider, **overrides) builds one from conf/)."""
    if isinstance(raw, LLM):
        return raw
    return validate_section(LLM, dict(raw), prefix=("llm",))


CACHE_ENV = "SENTILOOP_LLM_CACHE"


def resolve_cache_dir(cfg: LLM, cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path(cfg.cache.dir)


def cache_dir_for(cfg: LLM, root: str | Path) -> Path:
    """Where stages keep the response cache: $SENTILOOP_LLM_CACHE if set, else llm.cache.dir
    (relative to the repository root). `dvc exp run --temp` and queued experiments run in a
    temporary copy of the repository, so set the variable to one absolute path to share the
    cache with them (otherwise each temporary copy starts an empty cache and pays again)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    d = Path(cfg.cache.dir).expanduser()
    return d if d.is_absolute() else Path(root) / d
