"""answer_queue: the relabel queue in, validated LLM answers and usage metrics out.

Order of business for one iteration:
1. sort the queue most-uncertain first (priority desc) and admit rows while the budget lasts.
   Answers cached by an earlier iteration are free (the loop re-queues rows the LLM already
   answered, and a real LLM would answer them the same way). Answers cached by this same
   iteration (a re-run) are charged what they originally cost and count towards max_rows, so a
   re-run admits exactly the same rows and pays nothing;
2. answer what the cache knows;
3. send the rest in batches (identical texts asked once), validating every reply; a reply that is
   garbage or leaves ids unanswered is retried (only the missing ids) with backoff, HTTP faults are
   retried by the SDK (Gemini) or by this loop (OpenAI-compatible), within llm.retries;
4. whatever is still unanswered is marked failed / discarded / over_budget and counted; the rest of
   the iteration goes on. A row gets an llm_label only from a reply that passed validation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..progress import bar
from .base import FAILURE_KINDS, ProviderError, Redactor, redact_sdk_logs
from .cache import ResponseCache, cache_key
from .config import LLMConfig, parse_config, resolve_cache_dir
from .prompt import (
    PROMPT_TEMPLATE_VERSION,
    Answer,
    MalformedReply,
    answers_schema,
    parse_answers,
    system_prompt,
    truncate,
    user_prompt,
)

log = logging.getLogger("sentiloop.relabel")

ANSWER_COLUMNS = ["id", "llm_label", "llm_confidence", "rationale", "provider", "model", "simulated", "status"]
STATUSES = ("answered", "cached", "failed", "over_budget", "discarded")


def empty_answers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(dtype=object),
            "llm_label": pd.Series(dtype=object),
            "llm_confidence": pd.Series(dtype=float),
            "rationale": pd.Series(dtype=object),
            "provider": pd.Series(dtype=object),
            "model": pd.Series(dtype=object),
            "simulated": pd.Series(dtype=bool),
            "status": pd.Series(dtype=object),
        }
    )


def build_provider(cfg: LLMConfig, *, gold_path: Path | None = None):
    """The provider object for cfg.provider (imports its SDK only when chosen)."""
    if cfg.provider == "gemini":
        from .gemini import GeminiProvider

        return GeminiProvider(cfg, cfg.api_key())
    if cfg.provider == "openai_compatible":
        from .openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(cfg, cfg.api_key())
    if cfg.provider == "simulated":
        from .simulated import SimulatedProvider

        return SimulatedProvider(cfg, gold_path)
    raise ValueError(f"no provider for {cfg.provider!r}")


@dataclass
class Usage:
    """Counters for one iteration; `flat()` is what dvclive logs."""

    provider: str
    model: str
    simulated: bool
    iteration: int
    queue_rows: int = 0
    requests: int = 0
    prompt_tokens: float = 0.0
    output_tokens: float = 0.0
    est_cost_usd: float = 0.0
    cache_hits: int = 0
    resumed_requests: int = 0  # paid by an earlier attempt at this queue that was killed
    resumed_cost_usd: float = 0.0
    charged_tokens: float = 0.0  # fresh + cached tokens: what the budget sees
    charged_cost_usd: float = 0.0
    failures: dict[str, int] = field(default_factory=lambda: {k: 0 for k in FAILURE_KINDS})
    discarded_unknown_id: int = 0
    discarded_unknown_label: int = 0
    discarded_invalid: int = 0
    discarded_duplicate: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    budget_stop: str = ""

    def add_failures(self, counts: Mapping[str, int]) -> None:
        for k, v in counts.items():
            k = k if k in self.failures else "other"
            self.failures[k] += int(v)

    def flat(self, answers: pd.DataFrame, min_confidence: float, llm_used: bool = True) -> dict:
        st = answers["status"].value_counts() if len(answers) else pd.Series(dtype=int)
        lat = np.asarray(self.latencies_ms, dtype=float)
        ok = answers["status"].isin(["answered", "cached"]) if len(answers) else None
        applicable = int((answers.loc[ok, "llm_confidence"] >= min_confidence).sum()) if ok is not None else 0
        out: dict[str, Any] = {
            "provider": self.provider,
            "model": self.model,
            "simulated": int(self.simulated),
            "llm_used": int(llm_used),
            "iteration": self.iteration,
            "queue_rows": self.queue_rows,
            "requests": self.requests,
            "prompt_tokens": int(round(self.prompt_tokens)),
            "output_tokens": int(round(self.output_tokens)),
            "total_tokens": int(round(self.prompt_tokens + self.output_tokens)),
            "cache_hits": self.cache_hits,
            "est_cost_usd": round(self.est_cost_usd, 8),
            "resumed_requests": self.resumed_requests,
            "resumed_cost_usd": round(self.resumed_cost_usd, 8),
            "budget_charged_tokens": int(round(self.charged_tokens)),
            "budget_charged_cost_usd": round(self.charged_cost_usd, 8),
        }
        for s in STATUSES:
            out[f"rows_{s}"] = int(st.get(s, 0))
        out["rows_applicable"] = applicable
        for k in FAILURE_KINDS:
            out[f"failures_{k}"] = int(self.failures.get(k, 0))
        out.update(
            discarded_unknown_id=self.discarded_unknown_id,
            discarded_unknown_label=self.discarded_unknown_label,
            discarded_invalid=self.discarded_invalid,
            discarded_duplicate=self.discarded_duplicate,
            latency_ms_p50=round(float(np.percentile(lat, 50)), 2) if lat.size else 0.0,
            latency_ms_p95=round(float(np.percentile(lat, 95)), 2) if lat.size else 0.0,
            budget_stop=self.budget_stop,
        )
        return out


class _Budget:
    def __init__(self, cfg: LLMConfig, usage: Usage):
        self.b, self.price, self.usage = cfg.budget, cfg.price, usage

    def would_exceed(self, est_prompt: float, est_output: float) -> str:
        """'' if a call of this estimated size fits, else the name of the limit it breaks."""
        u, b = self.usage, self.b
        if b.max_tokens is not None and u.charged_tokens + est_prompt + est_output > b.max_tokens:
            return "max_tokens"
        if b.max_cost_usd is not None and u.charged_cost_usd + self.price.cost(est_prompt, est_output) > b.max_cost_usd:
            return "max_cost_usd"
        return ""

    def charge(self, prompt_tokens: float, output_tokens: float) -> None:
        self.usage.charged_tokens += prompt_tokens + output_tokens
        self.usage.charged_cost_usd += self.price.cost(prompt_tokens, output_tokens)


def answer_queue(
    queue: pd.DataFrame,
    llm_cfg: LLMConfig | Mapping[str, Any],
    classes: Sequence[str],
    *,
    iteration: int,
    cache_dir: str | Path | None = None,
    gold_path: str | Path | None = None,
    provider=None,
) -> tuple[pd.DataFrame, dict]:
    """Ask the configured LLM to label the queue; return (answers, flat usage dict).

    queue: id, text (required), priority (higher = ask first; optional), other columns ignored.
    answers: one row per distinct queue id, columns ANSWER_COLUMNS; llm_label/llm_confidence are
    set only for status answered/cached. With provider `none`: an empty frame and usage saying
    no LLM was used. `provider` injects a ready provider object (tests, benchmarks).
    """
    cfg = parse_config(llm_cfg)
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("answer_queue needs the class list")
    missing = {"id", "text"} - set(queue.columns)
    if missing:
        raise ValueError(f"relabel queue lacks columns {sorted(missing)}")
    if not cfg.enabled and provider is None:
        usage = Usage(
            provider="none", model="", simulated=False, iteration=iteration, queue_rows=int(queue["id"].nunique())
        )
        return empty_answers(), usage.flat(empty_answers(), cfg.min_confidence, llm_used=False)

    redact = Redactor([cfg.api_key()])
    redact_sdk_logs(cfg.api_key())
    own_provider = provider is None
    provider = provider or build_provider(cfg, gold_path=Path(gold_path) if gold_path else None)
    cache = ResponseCache(resolve_cache_dir(cfg, cache_dir), enabled=cfg.cache.enabled)
    try:
        return _Run(cfg, classes, iteration, provider, cache, redact).run(queue)
    finally:
        cache.close()
        if own_provider:
            provider.close()


class _Run:
    def __init__(self, cfg: LLMConfig, classes: list[str], iteration: int, provider, cache, redact: Redactor):
        self.cfg, self.classes, self.provider, self.cache, self.redact = cfg, classes, provider, cache, redact
        self.usage = Usage(
            provider=provider.name, model=provider.model, simulated=provider.simulated, iteration=iteration
        )
        self.budget = _Budget(cfg, self.usage)
        self.system = system_prompt(classes)
        self.schema = answers_schema(classes)
        self.version = f"{PROMPT_TEMPLATE_VERSION}/{cfg.prompt_version}"
        cpt = cfg.budget.est_chars_per_token
        free = provider.simulated
        self._sys_tokens = 0.0 if free else len(self.system) / cpt + 40
        self._row_tokens = (lambda text: 0.0) if free else (lambda text: (len(text) + 30) / cpt)
        self._out_tokens = 0.0 if free else float(cfg.budget.est_output_tokens_per_row)

    # -- estimates -------------------------------------------------------------------------
    def _estimate(self, texts: Sequence[str]) -> tuple[float, float]:
        prompt = self._sys_tokens + sum(self._row_tokens(t) for t in texts)
        return prompt, self._out_tokens * len(texts)

    # -- main ------------------------------------------------------------------------------
    def run(self, queue: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        cfg = self.cfg
        q = queue.drop_duplicates("id", keep="first").reset_index(drop=True)
        q["id"] = q["id"].astype(str)
        self.usage.queue_rows = len(q)
        if "priority" in q.columns:
            q = q.assign(_p=pd.to_numeric(q["priority"], errors="coerce").fillna(-np.inf))
            q = q.sort_values("_p", ascending=False, kind="mergesort").drop(columns="_p")
        ids = q["id"].tolist()
        texts = [truncate(t, cfg.max_text_chars) for t in q["text"].astype(str)]
        # the simulated annotator answers per sentence id (from its gold label), not per text
        questions = [f"sentence-id:{i}" for i in ids] if self.provider.simulated else texts
        keys = [cache_key(self.provider.name, self.provider.model, self.version, self.classes, t) for t in questions]
        # spend paid by an earlier attempt at exactly this queue that never finished (killed)
        self.run_key = hashlib.sha256(json.dumps([self.usage.iteration, keys], ensure_ascii=False).encode()).hexdigest()
        reqs, pt, ot, cost, self.resumed_owners = self.cache.open_spend(self.run_key)
        u = self.usage
        u.requests, u.prompt_tokens, u.output_tokens, u.est_cost_usd = reqs, pt, ot, cost
        u.resumed_requests, u.resumed_cost_usd = reqs, cost
        status = {i: "over_budget" for i in ids}
        answer: dict[str, Answer] = {}

        # 1. admission in priority order (see the module docstring for what cached rows cost)
        max_rows = cfg.budget.max_rows
        hits = self.cache.get_many(keys)
        to_send: dict[str, list[str]] = {}  # key -> row ids sharing that text
        key_text: dict[str, str] = {}
        per_row_sys = self._sys_tokens / cfg.batch_size
        reserved_p = reserved_o = 0.0
        n = 0  # rows counted against max_rows
        closed = False  # a limit was hit: only free answers from here on
        for rid, text, key in zip(ids, texts, keys):
            hit = hits.get(key)
            if hit is not None and hit[3] < self.usage.iteration:  # known before: free
                answer[rid], status[rid] = hit[0], "cached"
                self.usage.cache_hits += 1
                continue
            if key in to_send:  # same text as an admitted row: asked once, costs nothing more
                to_send[key].append(rid)
                continue
            if closed:
                continue
            if max_rows is not None and n >= max_rows:
                self.usage.budget_stop = self.usage.budget_stop or "max_rows"
                closed = True
                continue
            if hit is not None:  # cached by this same iteration (a re-run): charged as before
                a, pt, ot, _ = hit
                limit = self.budget.would_exceed(pt, ot)
                if limit:
                    self.usage.budget_stop, closed = limit, True
                    continue
                n += 1
                self.budget.charge(pt, ot)
                answer[rid], status[rid] = a, "cached"
                self.usage.cache_hits += 1
                continue
            est_p, est_o = per_row_sys + self._row_tokens(text), self._out_tokens
            # reserve the estimate so admission stops where the money would run out
            limit = self.budget.would_exceed(reserved_p + est_p, reserved_o + est_o)
            if limit:
                self.usage.budget_stop, closed = limit, True
                continue
            n += 1
            reserved_p, reserved_o = reserved_p + est_p, reserved_o + est_o
            to_send[key] = [rid]
            key_text[key] = text

        # 2. batches of distinct texts
        keys_to_send = list(to_send)
        fatal = None
        progress = bar(
            desc=f"relabel it{self.usage.iteration} {self.provider.name}", total=len(keys_to_send), unit="text"
        )
        for start in range(0, len(keys_to_send), cfg.batch_size):
            batch = keys_to_send[start : start + cfg.batch_size]
            if fatal is not None:
                for k in batch:
                    for rid in to_send[k]:
                        status[rid] = "failed"
                progress.update(len(batch))
                continue
            results, fatal, stopped = self._ask(batch, key_text, {k: to_send[k][0] for k in batch})
            for k in batch:
                res = results.get(k, "failed")
                for rid in to_send[k]:
                    if isinstance(res, Answer):
                        answer[rid], status[rid] = res, "answered"
                    else:
                        status[rid] = res
            progress.update(len(batch))
            if stopped:  # budget ran out mid-way: everything after stays over_budget
                break
        progress.close()

        rows = []
        for rid in ids:
            a = answer.get(rid)
            rows.append(
                {
                    "id": rid,
                    "llm_label": a.label if a else None,
                    "llm_confidence": a.confidence if a else np.nan,
                    "rationale": a.rationale if a else None,
                    "provider": self.provider.name,
                    "model": self.provider.model,
                    "simulated": bool(self.provider.simulated),
                    "status": status[rid],
                }
            )
        self.cache.close_spend(self.run_key, self.resumed_owners)
        answers = pd.DataFrame(rows, columns=ANSWER_COLUMNS) if rows else empty_answers()
        answers["simulated"] = answers["simulated"].astype(bool)
        answers["llm_confidence"] = answers["llm_confidence"].astype(float)
        usage = self.usage.flat(answers, cfg.min_confidence)
        log.info(
            "relabel it%s: %s",
            usage["iteration"],
            self.redact(
                {
                    k: usage[k]
                    for k in (
                        "provider",
                        "model",
                        "queue_rows",
                        "rows_answered",
                        "rows_cached",
                        "rows_failed",
                        "rows_discarded",
                        "rows_over_budget",
                        "requests",
                        "est_cost_usd",
                    )
                }
            ),
        )
        return answers, usage

    # -- one batch -------------------------------------------------------------------------
    def _sleep(self, attempt: int, hint: float | None = None) -> None:
        if self.provider.simulated:  # nobody to be polite to
            return
        r = self.cfg.retries
        wait = min(r.max_backoff_s, r.backoff_s * (2**attempt))
        if hint:
            wait = max(wait, min(hint, r.max_backoff_s))
        if wait > 0:
            time.sleep(wait)

    def _ask(self, batch: list[str], key_text: dict[str, str], first_row: dict[str, str]):
        """Ask for every key in batch. Returns ({key: Answer | status}, fatal error, budget_stop)."""
        rid_of = {k: str(n + 1) for n, k in enumerate(batch)}  # short request ids
        key_of = {v: k for k, v in rid_of.items()}
        pending = list(batch)
        results: dict[str, Answer | str] = {}
        bad_answer: set[str] = set()
        attempts = self.cfg.retries.attempts
        for attempt in range(attempts):
            est_p, est_o = self._estimate([key_text[k] for k in pending])
            limit = self.budget.would_exceed(est_p, est_o)
            if limit:
                self.usage.budget_stop = limit
                for k in pending:
                    results[k] = "over_budget"
                return results, None, True
            items = [(rid_of[k], key_text[k]) for k in pending]
            t0 = time.perf_counter()
            try:
                kwargs = {}
                if self.provider.simulated:
                    kwargs["context"] = [(rid_of[k], first_row[k]) for k in pending]
                reply = self.provider.complete(self.system, user_prompt(items), schema=self.schema, **kwargs)
            except ProviderError as e:
                self.usage.latencies_ms.append((time.perf_counter() - t0) * 1000)
                self.usage.requests += max(1, e.http_attempts)
                self.cache.record_spend(self.run_key, self.usage.iteration, max(1, e.http_attempts), 0.0, 0.0, 0.0)
                self.usage.add_failures(e.http_failures or {e.kind: 1})
                log.warning("LLM request failed (%s, attempt %d/%d): %s", e.kind, attempt + 1, attempts, self.redact(e))
                if e.fatal:
                    for k in pending:
                        results[k] = "failed"
                    return results, e, False
                if e.retryable and attempt + 1 < attempts:
                    self._sleep(attempt, e.retry_after_s)
                    continue
                break
            self.usage.latencies_ms.append((time.perf_counter() - t0) * 1000)
            self.usage.requests += max(1, reply.http_attempts)
            self.usage.add_failures(reply.http_failures)
            self.usage.prompt_tokens += reply.prompt_tokens
            self.usage.output_tokens += reply.output_tokens
            cost = self.cfg.price.cost(reply.prompt_tokens, reply.output_tokens)
            self.usage.est_cost_usd += cost
            self.cache.record_spend(
                self.run_key,
                self.usage.iteration,
                max(1, reply.http_attempts),
                reply.prompt_tokens,
                reply.output_tokens,
                cost,
            )
            self.budget.charge(reply.prompt_tokens, reply.output_tokens)
            try:
                parsed = parse_answers(reply.text, [rid_of[k] for k in pending], self.classes)
            except MalformedReply as e:
                self.usage.add_failures({"malformed": 1})
                log.warning("LLM reply unusable (attempt %d/%d): %s", attempt + 1, attempts, self.redact(e))
                if attempt + 1 < attempts:
                    self._sleep(attempt)
                continue
            u = self.usage
            if parsed.truncated:
                u.add_failures({"malformed": 1})
                log.warning(
                    "LLM reply was cut off (attempt %d/%d): kept the %d complete answers",
                    attempt + 1,
                    attempts,
                    len(parsed.answers),
                )
            u.discarded_unknown_id += parsed.unknown_ids
            u.discarded_unknown_label += sum(parsed.unknown_labels.values())
            u.discarded_invalid += sum(parsed.invalid.values())
            u.discarded_duplicate += parsed.duplicates
            bad_answer |= {key_of[r] for r in (*parsed.unknown_labels, *parsed.invalid)}
            n_ok = max(1, len(parsed.answers))
            share_p, share_o = reply.prompt_tokens / n_ok, reply.output_tokens / n_ok
            fresh = []
            for r, a in parsed.answers.items():
                k = key_of[r]
                a = Answer(a.label, a.confidence, self.redact(a.rationale))  # before it is stored
                results[k] = a
                bad_answer.discard(k)
                fresh.append((k, self.provider.name, self.provider.model, self.version, a, share_p, share_o))
            self.cache.put_many(fresh, iteration=self.usage.iteration)
            answered_or_bad = set(parsed.answers) | set(parsed.unknown_labels) | set(parsed.invalid)
            n_missing = sum(1 for k in pending if rid_of[k] not in answered_or_bad)
            if n_missing:
                self.usage.add_failures({"missing": n_missing})
            pending = [k for k in pending if k not in results]
            if not pending:
                break
            if attempt + 1 < attempts:
                log.info("LLM reply left %d of %d ids unanswered; asking again for those", len(pending), len(items))
                self._sleep(attempt)
        for k in pending:
            results[k] = "discarded" if k in bad_answer else "failed"
        return results, None, False
