"""The real google-genai and openai SDK clients against fake servers on 127.0.0.1.

Each test scripts the faults the server plays, one per HTTP request, and checks what the user
relies on: every queue row ends answered / failed / discarded / over_budget, never with a label
from a reply that did not validate; faults are retried within llm.retries and counted by kind;
the rest of the iteration goes on.
"""

from __future__ import annotations

import pandas as pd
import pytest

from fake_llm_servers import FakeGemini, FakeOpenAI, oracle
from sentiloop.relabel import ConfigError, answer_queue
from sentiloop.settings import llm_config

CLASSES = ["negative", "neutral", "positive"]
KEY_ENV = "SENTILOOP_TEST_LLM_KEY"
KEY = "AIzaTEST-k3y-0123456789-abcdef"
TEXTS = ["a good movie", "bad acting", "it was a film", "I love it", "terrible plot", "great cast"]

PROVIDERS = [
    pytest.param(FakeGemini, "gemini", id="gemini"),
    pytest.param(FakeOpenAI, "openai_compatible", id="openai"),
]


def make_queue(texts=TEXTS):
    n = len(texts)
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "text": list(texts),
            "current_label": ["neutral"] * n,
            "ens_label": ["neutral"] * n,
            "confidence": [0.5] * n,
            "agreement": [0.5] * n,
            "reason": ["low_confidence"] * n,
            "priority": [float(n - i) for i in range(n)],
        }
    )  # s0 first


def make_cfg(fake, provider, **over):
    """conf/llm/<provider>.yaml with the fake server and fast retries (nested `over` merged)."""
    cfg = dict(
        model="gemini-2.5-flash",
        base_url=fake.base_url,
        api_key_env=[KEY_ENV],
        batch_size=2,
        timeout_s=5.0,
        retries=dict(attempts=3, backoff_s=0.001, max_backoff_s=0.01),
        price=dict(input_per_mtok=0.30, output_per_mtok=2.50),
        budget=dict(max_rows=100, max_tokens=1_000_000, max_cost_usd=10.0),
    )
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return llm_config(provider, **cfg)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def run(fake, provider, tmp_path, queue=None, **over):
    return answer_queue(
        make_queue() if queue is None else queue,
        make_cfg(fake, provider, **over),
        CLASSES,
        iteration=1,
        cache_dir=tmp_path / "cache",
    )


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_answers_every_row_with_structured_output_and_counts_usage(Fake, provider, tmp_path):
    with Fake() as fake:
        answers, usage = run(fake, provider, tmp_path)
    assert len(fake.requests) == 3  # 6 rows, 2 per request
    assert list(answers["status"]) == ["answered"] * 6
    assert list(answers["id"]) == [f"s{i}" for i in range(6)]
    assert list(answers["llm_label"]) == [oracle(t) for t in TEXTS]
    assert (answers["llm_confidence"] == 0.9).all() and not answers["simulated"].any()
    assert set(answers["provider"]) == {provider} and set(answers["model"]) == {"gemini-2.5-flash"}
    assert usage["requests"] == 3 and usage["rows_answered"] == 6 and usage["llm_used"] == 1
    assert usage["prompt_tokens"] > 0 and usage["output_tokens"] > 0
    expected = (usage["prompt_tokens"] * 0.30 + usage["output_tokens"] * 2.50) / 1e6
    assert usage["est_cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert usage["latency_ms_p95"] >= usage["latency_ms_p50"] > 0
    assert sum(v for k, v in usage.items() if k.startswith("failures_")) == 0
    req = fake.requests[0]
    if provider == "gemini":
        assert (
            req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
            or req["path"] == "/v1/models/gemini-2.5-flash:generateContent"
        )
        gen = req["body"]["generationConfig"]
        assert gen["responseMimeType"] == "application/json"
        assert gen["responseSchema"]["items"]["properties"]["label"]["enum"] == CLASSES
        assert req["headers"].get("x-goog-api-key") == KEY
    else:
        fmt = req["body"]["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["schema"]["properties"]["answers"]["items"]["properties"]["label"]["enum"] == CLASSES
        assert req["headers"].get("authorization") == f"Bearer {KEY}"


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
@pytest.mark.parametrize("fault,kind", [("429", "rate_limit"), ("500", "server"), ("timeout", "timeout")])
def test_http_faults_are_retried_and_counted(Fake, provider, fault, kind, tmp_path):
    # the server answers a "timeout" request only after the client's timeout has passed
    with Fake(faults=[fault], delay_s=1.5) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:2]), timeout_s=0.5)
    assert list(answers["status"]) == ["answered", "answered"]
    assert len(fake.requests) == 2 and usage["requests"] == 2
    assert usage[f"failures_{kind}"] == 1


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_a_batch_that_keeps_failing_is_skipped_and_the_rest_goes_on(Fake, provider, tmp_path):
    with Fake(faults=["500", "500", "500"]) as fake:  # = retries.attempts
        answers, usage = run(fake, provider, tmp_path)
    st = dict(zip(answers["id"], answers["status"]))
    assert st["s0"] == st["s1"] == "failed"
    assert [st[f"s{i}"] for i in range(2, 6)] == ["answered"] * 4
    assert answers.loc[answers["status"] == "failed", "llm_label"].isna().all()
    assert answers.loc[answers["status"] == "failed", "llm_confidence"].isna().all()
    assert usage["failures_server"] == 3 and usage["rows_failed"] == 2
    assert len(fake.requests) == 5


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_garbage_and_truncated_json_are_retried(Fake, provider, tmp_path):
    with Fake(faults=["garbage", "truncated"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:2]))
    assert list(answers["status"]) == ["answered", "answered"]
    assert usage["failures_malformed"] == 2 and len(fake.requests) == 3


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_garbage_until_attempts_run_out_leaves_rows_unlabelled(Fake, provider, tmp_path):
    with Fake(faults=["garbage", "garbage", "garbage"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:2]))
    assert list(answers["status"]) == ["failed", "failed"]
    assert answers["llm_label"].isna().all()
    assert usage["failures_malformed"] == 3


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_a_cut_off_reply_keeps_its_complete_answers_and_asks_for_the_rest(Fake, provider, tmp_path):
    with Fake(faults=["truncated"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:4]), batch_size=4)
    assert list(answers["llm_label"]) == [oracle(t) for t in TEXTS[:4]]
    assert usage["failures_malformed"] == 1 and len(fake.requests) == 2
    second = str(fake.requests[1]["body"])
    assert TEXTS[0] not in second and TEXTS[3] in second  # only the cut-off ones again


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_http_body_that_is_not_json_is_a_malformed_reply(Fake, provider, tmp_path):
    with Fake(faults=["body_garbage"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:2]))
    assert list(answers["status"]) == ["answered", "answered"]
    assert usage["failures_malformed"] == 1


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_missing_ids_are_asked_for_again_alone(Fake, provider, tmp_path):
    with Fake(faults=["drop1"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:2]))
    assert list(answers["status"]) == ["answered", "answered"]
    assert usage["failures_missing"] == 1 and len(fake.requests) == 2
    second = str(fake.requests[1]["body"])
    assert TEXTS[1] in second and TEXTS[0] not in second


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_unknown_ids_and_labels_are_discarded_and_counted(Fake, provider, tmp_path):
    with Fake(faults=["unknown_id", "unknown_label"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:4]), retries=dict(attempts=1))
    st = dict(zip(answers["id"], answers["status"]))
    assert st == {"s0": "answered", "s1": "answered", "s2": "discarded", "s3": "answered"}
    assert usage["discarded_unknown_id"] == 1 and usage["discarded_unknown_label"] == 1
    assert set(answers["llm_label"].dropna()) <= set(CLASSES)
    assert answers.loc[answers["id"] == "s2", "llm_label"].isna().all()
    assert usage["rows_discarded"] == 1


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_unknown_label_is_asked_again_when_attempts_remain(Fake, provider, tmp_path):
    with Fake(faults=["unknown_label"]) as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(TEXTS[:2]))
    assert list(answers["llm_label"]) == [oracle(TEXTS[0]), oracle(TEXTS[1])]
    assert usage["discarded_unknown_label"] == 1 and len(fake.requests) == 2


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_cache_prevents_a_second_paid_call(Fake, provider, tmp_path):
    with Fake() as fake:
        first, u1 = run(fake, provider, tmp_path)
        n_paid = len(fake.requests)
        second, u2 = run(fake, provider, tmp_path)
        assert len(fake.requests) == n_paid  # nothing new reached the server
        assert u2["requests"] == 0 and u2["est_cost_usd"] == 0 and u2["cache_hits"] == 6
        assert list(second["status"]) == ["cached"] * 6
        assert list(second["llm_label"]) == list(first["llm_label"])
        # the budget sees the original cost, so a re-run admits the same rows
        assert u2["budget_charged_tokens"] == pytest.approx(u1["budget_charged_tokens"], abs=2)
        # a new prompt version is a different question: paid again
        run(fake, provider, tmp_path, prompt_version="v2")
        assert len(fake.requests) == 2 * n_paid


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_answers_from_an_earlier_iteration_are_free_and_outside_max_rows(Fake, provider, tmp_path):
    with Fake() as fake:
        first, _ = run(fake, provider, tmp_path, budget=dict(max_rows=3))
        assert list(first["status"]) == ["answered"] * 3 + ["over_budget"] * 3
        n_paid = len(fake.requests)
        q = make_queue()
        second, u2 = answer_queue(
            q, make_cfg(fake, provider, budget=dict(max_rows=3)), CLASSES, iteration=2, cache_dir=tmp_path / "cache"
        )
        assert list(second["status"]) == ["cached"] * 3 + ["answered"] * 3
        assert u2["cache_hits"] == 3 and u2["budget_charged_tokens"] == u2["total_tokens"]
        sent = " ".join(str(r["body"]) for r in fake.requests[n_paid:])
        assert TEXTS[0] not in sent and TEXTS[5] in sent


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_identical_texts_are_asked_once(Fake, provider, tmp_path):
    with Fake() as fake:
        answers, usage = run(fake, provider, tmp_path, queue=make_queue(["good", "good", "bad"]))
    assert list(answers["status"]) == ["answered"] * 3
    assert list(answers["llm_label"]) == ["positive", "positive", "negative"]
    assert str(fake.requests[0]["body"]).count("good") == 1


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_max_rows_takes_the_most_uncertain_first(Fake, provider, tmp_path):
    q = make_queue()
    q["priority"] = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    with Fake() as fake:
        answers, usage = run(fake, provider, tmp_path, queue=q, budget=dict(max_rows=3))
    st = dict(zip(answers["id"], answers["status"]))
    assert {k for k, v in st.items() if v == "answered"} == {"s1", "s3", "s5"}
    assert usage["rows_over_budget"] == 3 and usage["budget_stop"] == "max_rows"
    sent = " ".join(str(r["body"]) for r in fake.requests)
    assert TEXTS[0] not in sent and TEXTS[1] in sent


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_token_and_cost_budgets_stop_sending(Fake, provider, tmp_path):
    with Fake() as fake:
        a1, u1 = run(fake, provider, tmp_path / "a", budget=dict(max_tokens=700))
        a2, u2 = run(fake, provider, tmp_path / "b", budget=dict(max_cost_usd=0.0003))
    for answers, usage, limit in ((a1, u1, "max_tokens"), (a2, u2, "max_cost_usd")):
        assert usage["budget_stop"] == limit
        assert 0 < usage["rows_answered"] < 6
        assert usage["rows_over_budget"] == 6 - usage["rows_answered"]
        assert answers.loc[answers["status"] == "over_budget", "llm_label"].isna().all()
    assert u1["total_tokens"] <= 700 and u2["est_cost_usd"] <= 0.0003


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_auth_failure_stops_the_iteration_without_leaking_the_key(Fake, provider, tmp_path, caplog, capfd):
    caplog.set_level("DEBUG")
    with Fake(faults=["401echo"]) as fake:
        answers, usage = run(fake, provider, tmp_path)
    assert len(fake.requests) == 1  # a bad key is not worth a second request
    assert list(answers["status"]) == ["failed"] * 6
    assert usage["failures_auth"] == 1
    out, err = capfd.readouterr()
    assert KEY not in caplog.text + out + err
    assert "[REDACTED]" in caplog.text  # the echoed key was there, and was redacted


def test_none_provider_uses_no_llm(tmp_path):
    answers, usage = answer_queue(make_queue(), llm_config("none"), CLASSES, iteration=2, cache_dir=tmp_path)
    assert answers.empty and list(answers.columns) == [
        "id",
        "llm_label",
        "llm_confidence",
        "rationale",
        "provider",
        "model",
        "simulated",
        "status",
    ]
    assert usage["llm_used"] == 0 and usage["provider"] == "none" and usage["requests"] == 0
    assert usage["queue_rows"] == 6 and usage["iteration"] == 2
    assert not (tmp_path / "responses.sqlite").exists()


def test_config_errors_name_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        answer_queue(
            make_queue(), llm_config("gemini", api_key_env=[KEY_ENV]), CLASSES, iteration=1, cache_dir=tmp_path
        )
    with pytest.raises(ConfigError, match="llm.api_key is not allowed.*api_key_env"):
        llm_config("gemini", api_key="x")
    with pytest.raises(ConfigError, match="base_url"):
        answer_queue(
            make_queue(), llm_config("openai_compatible", base_url=None), CLASSES, iteration=1, cache_dir=tmp_path
        )
    with pytest.raises(ConfigError, match="llm.provider = 'claude': must be one of"):
        llm_config("none", provider="claude")
    with pytest.raises(ConfigError, match=r"llm.batch_size = 0: must be >= 1"):
        llm_config("gemini", batch_size=0)
    with pytest.raises(ValueError, match="text"):
        answer_queue(
            make_queue().drop(columns="text"), llm_config("simulated"), CLASSES, iteration=1, cache_dir=tmp_path
        )


def test_openai_compatible_local_server_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with FakeOpenAI() as fake:
        answers, _ = run(fake, "openai_compatible", tmp_path, queue=make_queue(TEXTS[:2]))
    assert list(answers["status"]) == ["answered", "answered"]


@pytest.mark.parametrize("Fake,provider", PROVIDERS)
def test_free_answers_are_used_even_after_the_budget_is_spent(Fake, provider, tmp_path):
    with Fake() as fake:
        q = make_queue()
        q["priority"] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # s5 first
        run(fake, provider, tmp_path, queue=q.iloc[[0]])  # s0 answered in iteration 1
        answers, usage = answer_queue(
            q, make_cfg(fake, provider, budget=dict(max_rows=2)), CLASSES, iteration=2, cache_dir=tmp_path / "cache"
        )
    st = dict(zip(answers["id"], answers["status"]))
    assert st == {
        "s5": "answered",
        "s4": "answered",
        "s3": "over_budget",
        "s2": "over_budget",
        "s1": "over_budget",
        "s0": "cached",
    }
    assert usage["budget_stop"] == "max_rows"
