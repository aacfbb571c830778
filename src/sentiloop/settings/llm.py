"""The `llm` section (conf/llm/<provider>.yaml): who answers the relabel queue, at what cost.

The API key itself is never part of the config: only the names of the environment variables
that may hold it.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import model_validator

from sentiloop.settings._base import NonNegFloat, NonNegInt, PosFloat, PosInt, Section, Share, fail

PROVIDERS = ("none", "gemini", "openai_compatible", "simulated")


class Retries(Section):
    attempts: PosInt  # tries per request, the first included
    backoff_s: NonNegFloat  # first wait; doubles each retry
    max_backoff_s: NonNegFloat


class Budget(Section):
    """Per iteration; null = unlimited."""

    max_rows: NonNegInt | None
    max_tokens: NonNegInt | None
    max_cost_usd: NonNegFloat | None
    est_chars_per_token: PosFloat
    est_output_tokens_per_row: NonNegInt


class Price(Section):
    input_per_mtok: NonNegFloat
    output_per_mtok: NonNegFloat

    def cost(self, prompt_tokens: float, output_tokens: float) -> float:
        return (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class Cache(Section):
    enabled: bool
    dir: str


class Review(Section):
    enabled: bool
    max_samples: NonNegInt
    max_output_tokens: PosInt


class Simulated(Section):
    accuracy: Share
    seed: int


class LLM(Section):
    provider: Literal["none", "gemini", "openai_compatible", "simulated"]
    model: str
    base_url: str | None
    api_version: str | None
    api_key_env: list[str]
    batch_size: PosInt
    min_confidence: Share
    prompt_version: str
    temperature: NonNegFloat
    thinking_budget: NonNegInt | None
    max_text_chars: PosInt
    response_format: Literal["json_schema", "json_object", "none"]
    timeout_s: PosFloat
    retries: Retries
    budget: Budget
    price: Price
    cache: Cache
    review: Review
    simulated: Simulated

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise fail(
                "llm.api_key is not allowed: put the key in an environment variable and name it in llm.api_key_env"
            )
        return data

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
