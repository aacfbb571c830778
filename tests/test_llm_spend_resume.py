"""LLM spend is recorded as it is paid: a relabel run killed with SIGKILL after two answered
batches, then resumed, reports every paid request, as the uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_llm_servers import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "SENTILOOP_TEST_LLM_KEY"
TEXTS = [
    "a good movie",
    "bad acting",
    "it was a film",
    "I love it",
    "terrible plot",
    "great cast",
    "awful ending",
    "excellent score",
]


def run_relabel(url: str, cache: str) -> dict:
    """One relabel iteration of TEXTS (4 batches of 2) against the fake server at `url`."""
    import pandas as pd

    from sentiloop.relabel import answer_queue
    from sentiloop.settings import llm_config

    n = len(TEXTS)
    queue = pd.DataFrame(
        {"id": [f"s{i}" for i in range(n)], "text": TEXTS, "priority": [float(n - i) for i in range(n)]}
    )
    cfg = llm_config(
        "openai_compatible",
        model="m",
        base_url=url,
        api_key_env=[KEY_ENV],
        batch_size=2,
        timeout_s=30.0,
        retries=dict(attempts=1, backoff_s=0.001, max_backoff_s=0.01),
        price=dict(input_per_mtok=1000.0, output_per_mtok=1000.0),
        budget=dict(max_rows=100, max_tokens=10_000_000, max_cost_usd=1000.0),
    )
    answers, usage = answer_queue(queue, cfg, ["negative", "neutral", "positive"], iteration=2, cache_dir=cache)
    return {"usage": usage, "labels": answers["llm_label"].tolist()}


SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{tests!r}]
    from test_llm_spend_resume import run_relabel
    print(json.dumps(run_relabel({url!r}, {cache!r})))
""")


def relabel(fake, cache: Path, tmp_path: Path, *, background: bool = False):
    """In this process, or (background) in a child process that the test can kill -9."""
    if not background:
        return json.loads(json.dumps(run_relabel(fake.base_url, str(cache))))
    script = tmp_path / "relabel.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests"), url=fake.base_url, cache=str(cache)))
    env = {**os.environ, KEY_ENV: "sk-test", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_killed_relabel_run_keeps_its_spend(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with FakeOpenAI() as fake:
        whole = relabel(fake, tmp_path / "cache-whole", tmp_path)
        assert whole["usage"]["requests"] == 4 and whole["usage"]["resumed_requests"] == 0

    with FakeOpenAI(faults=["ok", "ok", "stall"]) as fake:
        proc = relabel(fake, tmp_path / "cache", tmp_path, background=True)
        try:
            assert fake.stalled.wait(90), proc.communicate(timeout=5)
            time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)  # kill -9 during the third batch
            proc.wait(30)
        finally:
            fake.release.set()
        assert proc.returncode == -signal.SIGKILL
        resumed = relabel(fake, tmp_path / "cache", tmp_path)
    u, w = resumed["usage"], whole["usage"]
    assert resumed["labels"] == whole["labels"]
    assert (u["requests"], u["resumed_requests"]) == (4, 2)
    for k in ("prompt_tokens", "output_tokens"):
        assert u[k] == w[k]
    assert u["est_cost_usd"] == pytest.approx(w["est_cost_usd"])
    assert u["resumed_cost_usd"] == pytest.approx(w["est_cost_usd"] / 2, rel=0.2)

    # the resumed run finished: a later identical run pays nothing and reports nothing paid
    with FakeOpenAI() as fake:
        again = relabel(fake, tmp_path / "cache", tmp_path)
        assert len(fake.requests) == 0
    assert (again["usage"]["requests"], again["usage"]["est_cost_usd"]) == (0, 0)


def test_open_spend_of_a_live_concurrent_run_is_not_taken_over(tmp_path, monkeypatch):
    """Two queued experiments relabelling the same queue at once: the spend of the one still
    running is its own; only a dead process's open spend is carried by a resumed run."""
    import socket

    from sentiloop.relabel import cache as C

    cache = C.ResponseCache(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = socket.gethostname()
        for pid, cost in ((live.pid, 1.0), (dead.pid, 0.25)):
            monkeypatch.setattr(C, "_owner", lambda pid=pid: f"{host}:{pid}")
            cache.record_spend("q", 1, 2, 100.0, 10.0, cost)
        monkeypatch.undo()
        reqs, _, _, cost, owners = cache.open_spend("q")
        assert (reqs, cost, owners) == (2, 0.25, [f"{host}:{dead.pid}"])
        cache.close_spend("q", owners)
        assert cache.open_spend("q")[0] == 0  # the dead run's spend is closed
        live.kill()
        live.wait()
        assert cache.open_spend("q")[3] == 1.0  # the live one's stays open until it ends
    finally:
        live.kill()
        cache.close()
