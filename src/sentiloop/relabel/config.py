"""The `llm` section of params.yaml, parsed once and validated.

Stages hand `answer_queue` the composed `llm` dict; every key has a default here so an older
params.yaml (or a hand-written dict in a test) still works, and a wrong value fails early with a
message naming the key instead of deep inside an HTTP call. The API key itself is never part of
the config: only the *names* of the environment variables that may hold it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PROVIDERS = ("none", "gemini", "openai_compatible", "simulated")


class ConfigError(ValueError):
    """A bad `llm.*` value; the message names the key."""


@dataclass(frozen=True)
class Retries:
    attempts: int = 4            # total tries per request (1 = no retry)
    backoff_s: float = 1.0       # first wait; doubles each retry
    max_backoff_s: float = 30.0


@dataclass(frozen=True)
class Budget:
    max_rows: int | None = 500           # rows asked per iteration (earlier iterations' answers free)
    max_tokens: int | None = 200_000     # prompt + output tokens per iteration
    max_cost_usd: float | None = 0.50    # estimated from `price`
    est_chars_per_token: float = 2.0     # to estimate a request's size before sending it
    est_output_tokens_per_row: int = 50


@dataclass(frozen=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, prompt_tokens: float, output_tokens: float) -> float:
        return (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True)
class Simulated:
    accuracy: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class Review:
    enabled: bool = True
    max_samples: int = 20
    max_output_tokens: int = 2048


@dataclass(frozen=True)
class LLMConfig:
    provider: str = "none"
    model: str = "gemini-2.5-flash"
    base_url: str | None = None
    api_version: str | None = None
    api_key_env: tuple[str, ...] = ()
    batch_size: int = 20
    min_confidence: float = 0.7
    prompt_version: str = "v1"
    temperature: float = 0.0
    thinking_budget: int | None = None
    max_text_chars: int = 500
    response_format: str = "json_schema"   # openai_compatible: json_schema | json_object | none
    timeout_s: float = 60.0
    retries: Retries = field(default_factory=Retries)
    budget: Budget = field(default_factory=Budget)
    price: Price = field(default_factory=Price)
    simulated: Simulated = field(default_factory=Simulated)
    review: Review = field(default_factory=Review)
    cache: bool = True
    cache_dir: str = ".cache/llm"

    @property
    def enabled(self) -> bool:
        return self.provider != "none"

    def api_key(self) -> str | None:
        """The first non-empty environment variable named in `api_key_env` (never logged)."""
        for name in self.api_key_env:
            value = os.environ.get(name, "").strip()
            if value:
                return value
        return None


def _sub(cls, raw: Any, key: str):
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"llm.{key} must be a mapping, got {type(raw).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"llm.{key}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    return cls(**{k: v for k, v in raw.items()})


def parse_config(raw: Mapping[str, Any] | None) -> LLMConfig:
    """Validate the composed `llm` section (a dict or an OmegaConf DictConfig)."""
    raw = dict(_to_plain(raw or {}))
    provider = raw.get("provider", "none")
    if provider not in PROVIDERS:
        raise ConfigError(f"llm.provider must be one of {PROVIDERS}, got {provider!r}")
    if "api_key" in raw:
        raise ConfigError("llm.api_key is not allowed: put the key in an environment variable and "
                          "name it in llm.api_key_env")
    env = raw.get("api_key_env") or ()
    if isinstance(env, str):
        env = (env,)
    kwargs = {k: v for k, v in raw.items() if k in LLMConfig.__dataclass_fields__}
    # `cache` may be a bool or {enabled, dir}
    cache = raw.get("cache", True)
    if isinstance(cache, Mapping):
        kwargs["cache"] = bool(cache.get("enabled", True))
        if cache.get("dir"):
            kwargs["cache_dir"] = str(cache["dir"])
    kwargs.update(
        api_key_env=tuple(str(e) for e in env),
        retries=_sub(Retries, raw.get("retries"), "retries"),
        budget=_sub(Budget, raw.get("budget"), "budget"),
        price=_sub(Price, raw.get("price"), "price"),
        simulated=_sub(Simulated, raw.get("simulated"), "simulated"),
        review=_sub(Review, raw.get("review"), "review"),
    )
    cfg = LLMConfig(**kwargs)
    _check(cfg)
    return cfg


def _to_plain(raw):
    try:  # OmegaConf DictConfig -> dict, resolving interpolations
        from omegaconf import DictConfig, OmegaConf
        if isinstance(raw, DictConfig):
            return OmegaConf.to_container(raw, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return raw


def _check(cfg: LLMConfig) -> None:
    if cfg.batch_size < 1:
        raise ConfigError(f"llm.batch_size must be >= 1, got {cfg.batch_size}")
    if not 0.0 <= cfg.min_confidence <= 1.0:
        raise ConfigError(f"llm.min_confidence must be in [0, 1], got {cfg.min_confidence}")
    if cfg.retries.attempts < 1:
        raise ConfigError(f"llm.retries.attempts must be >= 1, got {cfg.retries.attempts}")
    if cfg.retries.backoff_s < 0 or cfg.retries.max_backoff_s < 0:
        raise ConfigError("llm.retries.backoff_s / max_backoff_s must be >= 0")
    if cfg.timeout_s <= 0:
        raise ConfigError(f"llm.timeout_s must be > 0, got {cfg.timeout_s}")
    if not 0.0 <= cfg.simulated.accuracy <= 1.0:
        raise ConfigError(f"llm.simulated.accuracy must be in [0, 1], got {cfg.simulated.accuracy}")
    for name in ("max_rows", "max_tokens", "max_cost_usd"):
        v = getattr(cfg.budget, name)
        if v is not None and v < 0:
            raise ConfigError(f"llm.budget.{name} must be >= 0 or null, got {v}")
    if cfg.response_format not in ("json_schema", "json_object", "none"):
        raise ConfigError("llm.response_format must be json_schema, json_object or none")
    if cfg.max_text_chars < 1:
        raise ConfigError("llm.max_text_chars must be >= 1")


CACHE_ENV = "SENTILOOP_LLM_CACHE"


def resolve_cache_dir(cfg: LLMConfig, cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path(cfg.cache_dir)


def cache_dir_for(llm_cfg: Mapping[str, Any] | None, root: str | Path) -> Path:
    """Where stages keep the response cache: $SENTILOOP_LLM_CACHE if set, else llm.cache.dir
    (relative to the repository root). `dvc exp run --temp` and queued experiments run in a
    temporary copy of the repository, so set the variable to one absolute path to share the
    cache with them (otherwise each temporary copy starts an empty cache and pays again)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    d = Path(parse_config(llm_cfg).cache_dir).expanduser()
    return d if d.is_absolute() else Path(root) / d
