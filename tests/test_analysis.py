"""The bias report: exact statistics on a hand-built iteration, the drift flag, the markdown,
and the LLM review through the real google-genai client against the fake server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fake_llm_servers import FakeGemini
from sentiloop.analysis.report import bias_report
from sentiloop.analysis.stats import bias_stats, member_names
from sentiloop.settings import llm_config

CLASSES = ["negative", "neutral", "positive"]
KEY_ENV = "SENTILOOP_TEST_LLM_KEY"


def iteration_frames():
    orig = ["negative"] * 4 + ["neutral"] * 3 + ["positive"] * 3
    cur = list(orig)
    cur[0] = "positive"  # neg -> pos
    cur[4] = cur[5] = "positive"  # neu -> pos
    ids = [f"t{i}" for i in range(10)]
    labels = pd.DataFrame(
        {
            "id": ids + ["x0", "x1"],
            "label": orig + ["neutral", "neutral"],
            "current_label": cur + ["neutral", "neutral"],
            "split": ["train"] * 10 + ["test"] * 2,
            "text": [f"sentence number {i}" for i in range(12)],
        }
    )
    changes = pd.DataFrame(
        {
            "id": ["t0", "t4", "t5"],
            "old_label": ["negative", "neutral", "neutral"],
            "new_label": ["positive"] * 3,
            "source": ["ensemble", "llm", "ensemble"],
        }
    )
    onehot = {c: np.eye(3)[i] for i, c in enumerate(CLASSES)}
    rows = []
    for i, c in zip(ids, cur):
        lex = onehot["positive"] * 0.8 + 0.2 / 3  # always says positive
        lstm = onehot[c] * 0.7 + 0.1  # agrees with the current label
        ens = (lex + lstm) / 2
        r = {
            "id": i,
            "split": "train",
            "ens_label": CLASSES[int(ens.argmax())],
            "confidence": float(ens.max()),
            "agreement": 1.0 if c == "positive" else 0.5,
        }
        for m, p in (("lexicon", lex), ("lstm", lstm), ("ens", ens)):
            r.update({f"p_{m}_{k}": float(p[j]) for j, k in enumerate(CLASSES)})
        rows.append(r)
    return labels, changes, pd.DataFrame(rows)


def test_statistics_are_exact():
    labels, changes, preds = iteration_frames()
    s = bias_stats(labels, CLASSES, changes=changes, predictions=preds, max_drift=0.05)
    assert s["rows"] == 10  # test split excluded
    assert {c: s["distribution"][c]["drift"] for c in CLASSES} == pytest.approx(
        {"negative": -0.1, "neutral": -0.2, "positive": 0.3}
    )
    assert s["max_drift_class"] == "positive" and s["max_abs_drift"] == pytest.approx(0.3)
    it = s["iteration_corrections"]
    assert it["changes"] == 3 and it["by_source"] == {"ensemble": 2, "llm": 1}
    assert it["rate_per_class"] == pytest.approx({"negative": 0.25, "neutral": 2 / 3, "positive": 0.0}, abs=1e-6)
    assert it["flow"]["neutral"]["positive"] == 2 and it["flow"]["negative"]["positive"] == 1
    assert s["overturned"]["neutral"] == {"rows": 3, "overturned": 2, "rate": pytest.approx(2 / 3, abs=1e-6)}
    assert s["original_to_current"]["negative"] == {"negative": 3, "neutral": 0, "positive": 1}
    assert member_names(preds, CLASSES) == ["lexicon", "lstm"]
    a = s["agreement"]
    assert a["positive"]["rows"] == 6 and a["positive"]["lexicon_agrees_with_label"] == 1.0
    assert a["negative"]["lexicon_agrees_with_label"] == 0.0
    assert a["negative"]["lstm_agrees_with_label"] == 1.0
    assert a["neutral"]["mean_agreement"] == 0.5
    m = s["mitigation"]
    assert m["engage"] and m["over"] == ["positive"] and m["under"] == ["negative", "neutral"]
    assert m["class_caps"] == {"negative": 1, "neutral": 2, "positive": 0}


def test_no_drift_no_mitigation_and_changes_before_iteration_reconstructed():
    labels, _, _ = iteration_frames()
    labels["current_label"] = labels["label"]
    s = bias_stats(labels, CLASSES, max_drift=0.05)
    assert not s["mitigation"]["engage"] and s["max_abs_drift"] == 0
    assert s["iteration_corrections"]["changes"] == 0 and s["agreement"] == {}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="current_label"):
        bias_stats(pd.DataFrame({"id": [1], "label": ["a"]}), ["a"])


def test_report_without_llm_writes_markdown_and_json(tmp_path):
    labels, changes, preds = iteration_frames()
    out = bias_report(
        labels,
        CLASSES,
        iteration=2,
        out_dir=tmp_path,
        changes=changes,
        predictions=preds,
        max_drift=0.05,
        llm_cfg=llm_config("none"),
    )
    md = (tmp_path / "it2.md").read_text()
    data = json.loads((tmp_path / "it2.json").read_text())
    assert data["mitigation"]["engage"] is True and out["mitigation"] == data["mitigation"]
    assert "# Bias report, iteration 2" in md
    assert "**Drift flagged:** positive grew, negative shrank, neutral shrank" in md
    assert "| positive | 3 (30.0%) | 6 (60.0%) | +30.00 pp |" in md
    assert "| neutral | 0 | 0 | 2 | 66.7% |" in md  # flow row + class rate
    assert "No LLM review: no LLM provider configured (llm=none)." in md
    assert data["review"]["status"] == "skipped"


def test_llm_review_goes_through_the_provider_once_then_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "AIzaREVIEW-secret-987654321")
    labels, changes, preds = iteration_frames()
    answers = pd.DataFrame(
        {
            "id": ["t1", "t2"],
            "llm_label": ["neutral", "negative"],
            "llm_confidence": [0.9, 0.8],
            "status": ["answered"] * 2,
        }
    )
    with FakeGemini() as fake:
        cfg = llm_config(
            "gemini",
            base_url=fake.base_url,
            api_key_env=[KEY_ENV],
            retries={"attempts": 2, "backoff_s": 0.001},
            price={"input_per_mtok": 0.3, "output_per_mtok": 2.5},
        )
        kw = dict(
            iteration=1,
            out_dir=tmp_path / "m",
            changes=changes,
            predictions=preds,
            answers=answers,
            llm_cfg=cfg,
            cache_dir=tmp_path / "cache",
        )
        out = bias_report(labels, CLASSES, **kw)
        assert len(fake.requests) == 1
        body = fake.requests[0]["body"]
        assert body["generationConfig"]["responseMimeType"] == "application/json"
        assert "sentence number 1" in body["contents"][0]["parts"][0]["text"]  # a sample text
        again = bias_report(labels, CLASSES, **kw)
        assert len(fake.requests) == 1 and again["review"]["status"] == "cached"
    assert out["review"]["status"] == "ok" and out["review"]["prompt_tokens"] > 0
    md = (tmp_path / "m" / "it1.md").read_text()
    assert "The summary written by the fake reviewer." in md
    assert "- edge_cases point one" in md and "**Bias risks**" in md
    assert "llm_vs_ensemble" in md and "ensemble_vs_label" in md


def test_llm_review_is_skipped_when_the_budget_is_spent(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "AIzaREVIEW-secret-987654321")
    labels, changes, preds = iteration_frames()
    with FakeGemini() as fake:
        cfg = llm_config("gemini", base_url=fake.base_url, api_key_env=[KEY_ENV], budget={"max_tokens": 5000})
        out = bias_report(
            labels,
            CLASSES,
            iteration=1,
            out_dir=tmp_path,
            predictions=preds,
            llm_cfg=cfg,
            cache_dir=tmp_path,
            llm_usage={"budget_charged_tokens": 4900},
        )
        assert fake.requests == []
    assert out["review"]["status"] == "skipped" and "over budget" in out["review"]["reason"]


def test_llm_review_failure_still_writes_the_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "AIzaREVIEW-secret-987654321")
    labels, changes, preds = iteration_frames()
    with FakeGemini(faults=["500", "500"]) as fake:
        cfg = llm_config(
            "gemini", base_url=fake.base_url, api_key_env=[KEY_ENV], retries={"attempts": 2, "backoff_s": 0.001}
        )
        out = bias_report(
            labels, CLASSES, iteration=3, out_dir=tmp_path, predictions=preds, llm_cfg=cfg, cache_dir=tmp_path
        )
    assert out["review"]["status"] == "failed" and "server" in out["review"]["reason"]
    assert "No LLM review: server" in (tmp_path / "it3.md").read_text()
