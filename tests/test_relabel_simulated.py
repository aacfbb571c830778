"""The simulated annotator and the response cache's robustness."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from sentiloop.relabel import answer_queue
from sentiloop.relabel.cache import ResponseCache, cache_key
from sentiloop.relabel.prompt import Answer
from sentiloop.settings import llm_config

CLASSES = ["negative", "neutral", "positive"]


def gold_db(path, n, seed=0):
    rng = np.random.default_rng(seed)
    gold = rng.choice(CLASSES, size=n)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE gold (id TEXT PRIMARY KEY, gold_label TEXT)")
    con.executemany("INSERT INTO gold VALUES (?, ?)", [(f"r{i}", g) for i, g in enumerate(gold)])
    con.commit()
    con.close()
    return dict(zip([f"r{i}" for i in range(n)], gold))


def queue(ids):
    return pd.DataFrame({"id": ids, "text": [f"text of {i}" for i in ids], "priority": np.linspace(1, 0, len(ids))})


def sim_cfg(**over):
    cfg = {
        "batch_size": 25,
        "simulated": {"accuracy": 0.9, "seed": 7},
        "budget": {"max_rows": None, "max_tokens": None, "max_cost_usd": None},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return llm_config("simulated", **cfg)


def test_simulated_annotator_has_the_configured_accuracy_and_says_it_is_simulated(tmp_path):
    gold = gold_db(tmp_path / "gold.sqlite", 3000)
    ids = list(gold)
    answers, usage = answer_queue(
        queue(ids), sim_cfg(), CLASSES, iteration=1, cache_dir=tmp_path / "cache", gold_path=tmp_path / "gold.sqlite"
    )
    assert (answers["status"] == "answered").all() and answers["simulated"].all()
    assert usage["simulated"] == 1 and usage["provider"] == "simulated"
    assert usage["requests"] == 120 and usage["est_cost_usd"] == 0 and usage["total_tokens"] == 0
    acc = (answers["llm_label"] == answers["id"].map(gold)).mean()
    assert 0.88 <= acc <= 0.92  # binomial sd ~0.0055 at n=3000
    wrong = answers[answers["llm_label"] != answers["id"].map(gold)]
    assert set(wrong["llm_label"]) == set(CLASSES)  # errors spread over the other classes
    assert (answers["llm_confidence"] == 0.9).all()
    assert answers["rationale"].str.contains("simulated").all()
    # asked again in a later iteration: answered from the cache, free, outside max_rows
    again, u2 = answer_queue(
        queue(ids),
        sim_cfg(budget={"max_rows": 10}),
        CLASSES,
        iteration=2,
        cache_dir=tmp_path / "cache",
        gold_path=tmp_path / "gold.sqlite",
    )
    assert (again["status"] == "cached").all() and u2["requests"] == 0
    assert list(again["llm_label"]) == list(answers["llm_label"])


def test_simulated_answers_depend_only_on_seed_and_id(tmp_path):
    gold_db(tmp_path / "gold.sqlite", 400)
    ids = [f"r{i}" for i in range(400)]
    kw = dict(iteration=1, gold_path=tmp_path / "gold.sqlite")
    a, _ = answer_queue(queue(ids), sim_cfg(), CLASSES, cache_dir=tmp_path / "a", **kw)
    b, _ = answer_queue(queue(ids[::-1]), sim_cfg(batch_size=7), CLASSES, cache_dir=tmp_path / "b", **kw)
    c, _ = answer_queue(
        queue(ids), sim_cfg(simulated={"accuracy": 0.9, "seed": 8}), CLASSES, cache_dir=tmp_path / "a", **kw
    )  # another seed is another cache key
    la, lb, lc = (x.set_index("id")["llm_label"] for x in (a, b, c))
    assert la.equals(lb.loc[la.index])
    assert not la.equals(lc)


def test_rows_without_gold_fail_and_the_rest_is_answered(tmp_path):
    gold_db(tmp_path / "gold.sqlite", 10)
    answers, usage = answer_queue(
        queue(["r1", "nope", "r2"]),
        sim_cfg(),
        CLASSES,
        iteration=1,
        cache_dir=tmp_path,
        gold_path=tmp_path / "gold.sqlite",
    )
    assert dict(zip(answers["id"], answers["status"])) == {"r1": "answered", "nope": "failed", "r2": "answered"}
    assert usage["failures_missing"] >= 1


def test_simulated_without_gold_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="gold"):
        answer_queue(
            queue(["r1"]), sim_cfg(), CLASSES, iteration=1, cache_dir=tmp_path, gold_path=tmp_path / "missing.sqlite"
        )


def test_cache_roundtrip_and_key_covers_classes(tmp_path):
    c = ResponseCache(tmp_path)
    k = cache_key("gemini", "m", "v1", CLASSES, "hello")
    assert k != cache_key("gemini", "m", "v1", CLASSES[::2], "hello")
    assert k != cache_key("gemini", "m", "v2", CLASSES, "hello")
    assert k != cache_key("openai_compatible", "m", "v1", CLASSES, "hello")
    c.put_many([(k, "gemini", "m", "v1", Answer("positive", 0.8, "why"), 12.0, 3.0)])
    c.close()
    got = ResponseCache(tmp_path).get_many([k, "other"])
    assert got == {k: (Answer("positive", 0.8, "why"), 12.0, 3.0, 0)}


def test_a_damaged_cache_file_is_moved_aside_not_fatal(tmp_path):
    (tmp_path / ResponseCache.FILENAME).write_bytes(b"this is not sqlite" * 100)
    c = ResponseCache(tmp_path)
    assert c.enabled and c.get_many(["x"]) == {}
    assert list(tmp_path.glob("responses.corrupt-*"))


def test_an_empty_queue_asks_nothing(tmp_path):
    gold_db(tmp_path / "gold.sqlite", 3)
    answers, usage = answer_queue(
        queue([]), sim_cfg(), CLASSES, iteration=1, cache_dir=tmp_path, gold_path=tmp_path / "gold.sqlite"
    )
    assert answers.empty and usage["requests"] == 0 and usage["queue_rows"] == 0
    assert "status" in answers.columns


def test_applicable_answers_apply_the_confidence_bar():
    from sentiloop.relabel import applicable_answers

    a = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "llm_label": ["positive", "negative", None, "neutral"],
            "llm_confidence": [0.9, 0.5, np.nan, 0.7],
            "status": ["answered", "cached", "failed", "cached"],
        }
    )
    assert list(applicable_answers(a, 0.7)["id"]) == ["a", "d"]


def test_salvage_keeps_complete_objects_of_a_cut_off_array():
    from sentiloop.relabel.prompt import parse_answers, salvage_items

    cut = '```json\n[{"id": "1", "label": "positive", "confidence": 0.9, "rationale": "a, b"}, {"id": "2", "lab'
    assert salvage_items(cut) == [{"id": "1", "label": "positive", "confidence": 0.9, "rationale": "a, b"}]
    assert salvage_items('{"answers": [') == [] and salvage_items("no json") == []
    p = parse_answers(cut, ["1", "2"], CLASSES)
    assert p.truncated and list(p.answers) == ["1"]
