"""The API key appears in no params file, log, metric, cache or report.

A distinctive key is put in the environment; servers that echo it back (in error messages, in
rationales, in the review) are used on purpose, the way a careless proxy or a prompt-injected
model might; then every file written and everything logged is searched for it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from fake_llm_servers import FakeGemini, FakeOpenAI
from sentiloop.analysis.report import bias_report
from sentiloop.relabel import answer_queue, parse_config
from test_analysis import iteration_frames

ROOT = Path(__file__).resolve().parents[1]
KEY = "AIzaSyLEAKCHECK-7f3c9e1b2d-0a9b8c7d6e5f"
CLASSES = ["negative", "neutral", "positive"]


def compose_llm(group: str, overrides=()):
    from hydra import compose, initialize_config_dir

    spec = importlib.util.spec_from_file_location("sl_chain", ROOT / "hydra_plugins" / "chain.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers ${chain:...}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        # the simulated annotator answers from gold labels: composing it needs a corpus that has them
        gold = ["data.gold_column=gold"] if group == "simulated" else []
        cfg = compose("config", overrides=[f"llm={group}", *gold, *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("group", ["none", "gemini", "openai_compatible", "simulated"])
def test_every_llm_config_composes_and_parses(group):
    params = compose_llm(group)
    cfg = parse_config(params["llm"])
    assert cfg.provider == group
    assert "api_key" not in params["llm"] and all(e.isupper() for e in cfg.api_key_env)
    if group == "gemini":
        assert cfg.model == "gemini-2.5-flash" and cfg.price.input_per_mtok > 0


def test_the_key_is_in_no_params_file_log_metric_cache_or_report(tmp_path, monkeypatch, caplog, capfd):
    from dvclive import Live

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)  # SDK debug logs included
    out = tmp_path / "out"
    labels, changes, preds = iteration_frames()
    queue = labels[labels["split"] == "train"].assign(priority=1.0)[["id", "text", "priority"]]
    runs = [
        (FakeGemini, "gemini", ["429echo", "ok", "garbage", "ok", "401echo"]),
        (FakeOpenAI, "openai_compatible", ["429echo", "ok", "401echo"]),
    ]
    for Fake, group, faults in runs:
        with Fake(faults=faults, echo_key=True) as fake:
            params = compose_llm(
                group, [f"llm.base_url={fake.base_url}", "llm.batch_size=3", "llm.retries.backoff_s=0.001"]
            )
            (out / group).mkdir(parents=True)
            (out / group / "params.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(params)))
            answers, usage = answer_queue(queue, params["llm"], CLASSES, iteration=1, cache_dir=out / "cache")
            assert (answers["status"] == "answered").any()  # the run really ran
            assert (answers["status"] == "failed").any()  # and the 401 really hit
            fake.faults = []
            report = bias_report(
                labels,
                CLASSES,
                iteration=1,
                out_dir=out / group / "analysis",
                changes=changes,
                predictions=preds,
                answers=answers,
                llm_cfg=params["llm"],
                cache_dir=out / "cache",
                llm_usage=usage,
            )
            assert report["review"]["status"] == "ok"
            assert any(KEY in json.dumps(r["headers"]) for r in fake.requests)  # key was sent
        answers.to_parquet(out / group / "relabel.parquet")
        (out / group / "usage.json").write_text(json.dumps(usage))
        with Live(dir=str(out / group / "live"), dvcyaml=False, save_dvc_exp=False) as live:
            for k, v in usage.items():
                if isinstance(v, (int, float)):
                    live.log_metric(f"llm/{k}", v)
                else:
                    live.log_param(f"llm_{k}", v)
    logged = caplog.text + "".join(capfd.readouterr())
    assert "[REDACTED]" in logged  # the 401 echoed the key: it was logged redacted
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 12
    leaks = [str(p.relative_to(out)) for p in files if KEY.encode() in p.read_bytes()]
    leaks += [
        str(p.relative_to(ROOT)) for p in (ROOT / "conf").rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()
    ]
    assert leaks == []
    assert KEY not in logged
    md = (out / "gemini" / "analysis" / "it1.md").read_text()
    assert "[REDACTED]" in md  # the echoed key was there and was removed
    rationale = " ".join(pd.read_parquet(out / "gemini" / "relabel.parquet")["rationale"].dropna())
    assert "[REDACTED]" in rationale
