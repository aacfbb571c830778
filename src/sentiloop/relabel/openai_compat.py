"""Any OpenAI-compatible chat-completions server: LM Studio, Ollama, vLLM, llama.cpp, OpenAI.

The openai SDK's own retry backoff is fixed (0.5 s doubling to 8 s) and not configurable, so the
client is built with max_retries=0 and the runner's retry loop (llm.retries) does the retrying,
honouring a Retry-After header when the server sends one. Structured output: response_format
json_schema by default; `llm.response_format: json_object` or `none` for servers that do not
support schemas (the reply is validated either way).
"""

from __future__ import annotations

from .base import ProviderError, Reply, kind_for_status
from .config import ConfigError, LLMConfig

LOCAL_PLACEHOLDER_KEY = "not-needed"  # LM Studio / Ollama accept any key; the SDK requires one


class OpenAICompatProvider:
    name = "openai_compatible"
    simulated = False
    sdk_retries = False

    def __init__(self, cfg: LLMConfig, api_key: str | None):
        import openai

        if not cfg.base_url:
            raise ConfigError(
                "llm.provider=openai_compatible needs llm.base_url, e.g. "
                "http://127.0.0.1:1234/v1 (LM Studio) or http://127.0.0.1:11434/v1 "
                "(Ollama)"
            )
        self.model = cfg.model
        self._cfg = cfg
        self._client = openai.OpenAI(
            api_key=api_key or LOCAL_PLACEHOLDER_KEY, base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=0
        )

    def complete(self, system: str, user: str, *, schema: dict, max_output_tokens: int | None = None) -> Reply:
        import openai

        cfg = self._cfg
        kwargs = dict(
            model=self.model,
            temperature=cfg.temperature,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
        if max_output_tokens:
            kwargs["max_tokens"] = int(max_output_tokens)
        if cfg.response_format == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": _wrap(schema)}
        elif cfg.response_format == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        try:
            resp = self._client.chat.completions.create(**kwargs)
        except openai.APIStatusError as e:
            kind = kind_for_status(e.status_code)
            raise ProviderError(
                kind,
                f"{self.name} HTTP {e.status_code}: {str(e.message)[:300]}",
                retryable=kind in ("rate_limit", "server", "timeout"),
                fatal=kind == "auth" or e.status_code == 404,
                http_failures={kind: 1},
                retry_after_s=_retry_after(e.response),
            ) from None
        except openai.APITimeoutError:
            raise ProviderError(
                "timeout", f"{self.name} timed out after {cfg.timeout_s}s", retryable=True, http_failures={"timeout": 1}
            ) from None
        except openai.APIConnectionError as e:
            raise ProviderError(
                "connection", f"{self.name} connection error: {e}", retryable=True, http_failures={"connection": 1}
            ) from None
        except ValueError as e:  # body that is not JSON at all
            raise ProviderError(
                "malformed", f"{self.name} reply not decodable: {str(e)[:200]}", retryable=True
            ) from None
        text = None
        choices = getattr(resp, "choices", None) or []
        if choices and choices[0].message is not None:
            text = choices[0].message.content
        usage = getattr(resp, "usage", None)
        return Reply(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # pragma: no cover
            pass


def _wrap(schema: dict) -> dict:
    """Strict json_schema wants an object at the top level."""
    if schema.get("type") == "object":
        return {"name": "reply", "strict": True, "schema": schema}
    return {
        "name": "reply",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"answers": schema},
            "required": ["answers"],
            "additionalProperties": False,
        },
    }


def _retry_after(response) -> float | None:
    try:
        headers = response.headers
    except AttributeError:
        return None
    for name, div in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        v = headers.get(name)
        if v:
            try:
                return float(v) / div
            except ValueError:
                return None
    return None
