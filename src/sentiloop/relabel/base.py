"""What every provider returns and raises, and the redaction of secrets.

Providers are deliberately thin: `complete(system, user, schema_kind)` sends one request and
returns the raw text plus token counts. Parsing, validation, retries of bad replies, the cache
and the budget live in one place (`runner.py`), so the three providers behave the same way.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from sentiloop.errors import SentiloopError

# failure kinds, as they appear in usage metrics (failures_<kind>)
FAILURE_KINDS = ("rate_limit", "server", "timeout", "connection", "auth", "client", "malformed", "missing", "other")


@dataclass
class Reply:
    text: str | None
    prompt_tokens: int = 0
    output_tokens: int = 0
    http_attempts: int = 1  # HTTP requests this call made (SDK retries too)
    http_failures: dict[str, int] = field(default_factory=dict)  # failed attempts inside the SDK


class ProviderError(SentiloopError, RuntimeError):
    """A request that failed for good (after the SDK's own retries, where it has them).

    kind: one of FAILURE_KINDS; retryable: whether our own retry loop may try again;
    fatal: no later request can succeed either (bad key, unknown model), stop the iteration.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool = False,
        fatal: bool = False,
        http_attempts: int = 1,
        http_failures: dict[str, int] | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.kind = kind if kind in FAILURE_KINDS else "other"
        self.retryable = retryable
        self.fatal = fatal
        self.http_attempts = http_attempts
        self.http_failures = dict(http_failures or {})


class Provider(Protocol):
    name: str
    model: str
    simulated: bool
    sdk_retries: bool  # True: HTTP retries happen inside the SDK; the runner must not repeat them

    def complete(self, system: str, user: str, *, schema: dict, max_output_tokens: int | None = None) -> Reply:
        """One request; `schema` is a plain JSON schema of the reply. Raises ProviderError."""

    def close(self) -> None: ...


def kind_for_status(status: int | None) -> str:
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status is not None and status >= 500:
        return "server"
    if status is not None and 400 <= status < 500:
        return "client"
    return "other"


class Redactor:
    """Replaces every known secret in a string. Applied to every message we log or store."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for s in self._secrets:
            out = out.replace(s, "[REDACTED]")
        # belt and braces: header-shaped leaks of keys we were not told about
        out = re.sub(
            r"(?i)(x-goog-api-key|authorization|api[-_]?key)([\"']?\s*[:=]\s*[\"']?)"
            r"(bearer\s+)?[A-Za-z0-9_\-\.]{8,}",
            r"\1\2\3[REDACTED]",
            out,
        )
        return out


# Loggers of the SDKs and their HTTP stacks. google-genai logs the error of every retried request
# (tenacity's before_sleep at INFO), and a careless server can echo the key inside that error.
SDK_LOGGERS = (
    "google_genai",
    "google_genai._api_client",
    "google_genai.models",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "openai",
    "openai._base_client",
    "tenacity",
)


class _RedactingFilter(logging.Filter):
    def __init__(self):
        super().__init__("sentiloop-redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - a broken record is not ours to fix
            return True
        if any(s in message for s in self.secrets):
            record.msg, record.args = Redactor(self.secrets)(message), ()
        return True


_FILTER = _RedactingFilter()


def redact_sdk_logs(secret: str | None) -> None:
    """Redact `secret` from every record the SDK loggers emit (logger-level filters run only on
    the logger a record is created on, so each known logger gets the filter)."""
    if not secret or len(secret) < 4:
        return
    _FILTER.secrets.add(secret)
    for name in SDK_LOGGERS:
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)
