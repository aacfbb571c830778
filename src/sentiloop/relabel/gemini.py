"""Gemini through the google-genai SDK.

HTTP retries (429, 5xx, 408, timeouts, connection errors) are the SDK's own: HttpRetryOptions with
our attempts and backoff, so the runner does not repeat them (`sdk_retries = True`). httpx event
hooks count every HTTP attempt the SDK makes and the status of each, which is how failed
attempts that the SDK later recovered from still show up in the usage metrics. Structured output
is requested with response_mime_type=application/json and a response_schema whose label is an
enum of the classes; the reply is still validated by the runner (the schema is a request, not a
guarantee: replies can be truncated at max tokens or come from a proxy that ignores it).
"""

from __future__ import annotations

from typing import Any

from .base import ProviderError, Reply, kind_for_status
from .config import ConfigError, LLMConfig


def to_gemini_schema(schema: dict) -> Any:
    """Plain JSON schema (the subset prompt.py writes) -> google.genai.types.Schema."""
    from google.genai import types

    kind = schema.get("type", "string").upper()
    kwargs: dict[str, Any] = {"type": getattr(types.Type, kind)}
    if "enum" in schema:
        kwargs["enum"] = list(schema["enum"])
    if "description" in schema:
        kwargs["description"] = schema["description"]
    if kind == "ARRAY":
        kwargs["items"] = to_gemini_schema(schema["items"])
    if kind == "OBJECT":
        props = schema.get("properties", {})
        kwargs["properties"] = {k: to_gemini_schema(v) for k, v in props.items()}
        kwargs["property_ordering"] = list(props)
        if schema.get("required"):
            kwargs["required"] = list(schema["required"])
    return types.Schema(**kwargs)


class GeminiProvider:
    name = "gemini"
    simulated = False
    sdk_retries = True

    def __init__(self, cfg: LLMConfig, api_key: str | None):
        from google import genai
        from google.genai import types

        if not api_key:
            names = ", ".join(cfg.api_key_env) or "(none configured)"
            raise ConfigError(
                f"llm.provider=gemini needs an API key in one of the environment variables llm.api_key_env: {names}"
            )
        self.model = cfg.model
        self._cfg = cfg
        self._types = types
        self._attempts = 0
        self._statuses: list[int] = []
        r = cfg.retries
        retry = types.HttpRetryOptions(
            attempts=r.attempts,
            initial_delay=r.backoff_s,
            max_delay=r.max_backoff_s,
            exp_base=2.0,
            jitter=r.backoff_s / 2,
        )
        http = dict(
            timeout=max(1, int(cfg.timeout_s * 1000)),
            retry_options=retry,
            client_args={"event_hooks": {"request": [self._on_request], "response": [self._on_response]}},
        )
        if cfg.base_url:
            http["base_url"] = cfg.base_url
        if cfg.api_version:
            http["api_version"] = cfg.api_version
        self._client = genai.Client(api_key=api_key, http_options=types.HttpOptions(**http))

    # httpx event hooks: one call per HTTP attempt, retries included
    def _on_request(self, request) -> None:
        self._attempts += 1

    def _on_response(self, response) -> None:
        self._statuses.append(response.status_code)

    def _failed_attempts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self._statuses:
            if s >= 400:
                k = kind_for_status(s)
                out[k] = out.get(k, 0) + 1
        lost = self._attempts - len(self._statuses)  # no response at all: timeout / connection
        if lost > 0:
            out["timeout"] = out.get("timeout", 0) + lost
        return out

    def complete(self, system: str, user: str, *, schema: dict, max_output_tokens: int | None = None) -> Reply:
        from google.genai import errors

        types = self._types
        cfg = self._cfg
        gen = dict(
            system_instruction=system,
            response_mime_type="application/json",
            response_schema=to_gemini_schema(schema),
            temperature=cfg.temperature,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if max_output_tokens:
            gen["max_output_tokens"] = int(max_output_tokens)
        if cfg.thinking_budget is not None:
            gen["thinking_config"] = types.ThinkingConfig(thinking_budget=int(cfg.thinking_budget))
        self._attempts, self._statuses = 0, []
        try:
            resp = self._client.models.generate_content(
                model=self.model, contents=user, config=types.GenerateContentConfig(**gen)
            )
        except errors.APIError as e:
            kind = kind_for_status(e.code)
            raise ProviderError(
                kind,
                f"gemini HTTP {e.code}: {str(e.message or e)[:300]}",
                fatal=kind == "auth" or e.code == 404,
                retryable=False,
                http_attempts=self._attempts,
                http_failures=self._failed_attempts(),
            ) from None
        except _transport_errors("TimeoutException") as e:
            raise ProviderError(
                "timeout",
                f"gemini timed out after {cfg.timeout_s}s: {type(e).__name__}",
                http_attempts=self._attempts,
                http_failures=self._failed_attempts(),
            ) from None
        except _transport_errors("HTTPError") as e:
            raise ProviderError(
                "connection",
                f"gemini connection error: {type(e).__name__}: {e}",
                http_attempts=self._attempts,
                http_failures=self._failed_attempts(),
            ) from None
        except ValueError as e:  # the SDK could not decode the HTTP body as JSON
            raise ProviderError(
                "malformed",
                f"gemini reply not decodable: {str(e)[:200]}",
                retryable=True,
                http_attempts=self._attempts,
                http_failures=self._failed_attempts(),
            ) from None
        return Reply(
            text=_text_of(resp),
            prompt_tokens=_tok(resp, "prompt_token_count"),
            output_tokens=_tok(resp, "candidates_token_count") + _tok(resp, "thoughts_token_count"),
            http_attempts=self._attempts,
            http_failures=self._failed_attempts(),
        )

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # pragma: no cover - best effort
            pass


def _transport_errors(name: str) -> tuple[type[BaseException], ...]:
    """The SDK runs on httpx or on its fork httpx2, whichever is installed: catch both."""
    import importlib

    out = []
    for mod in ("httpx", "httpx2"):
        try:
            cls = getattr(importlib.import_module(mod), name, None)
        except ImportError:
            continue
        if cls is not None:
            out.append(cls)
    return tuple(out) or (OSError,)


def _tok(resp, name: str) -> int:
    meta = getattr(resp, "usage_metadata", None)
    return int(getattr(meta, name, None) or 0) if meta is not None else 0


def _text_of(resp) -> str | None:
    """The answer text of the first candidate, without thought parts (None if there is none)."""
    cands = getattr(resp, "candidates", None) or []
    if not cands or cands[0].content is None or not cands[0].content.parts:
        return None
    texts = [p.text for p in cands[0].content.parts if p.text and not getattr(p, "thought", False)]
    return "".join(texts) if texts else None
