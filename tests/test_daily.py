"""`sentiloop daily`: the incoming batch (quarantine per file), and three simulated days end to
end through DVC and GTO in a temporary git repository (day 1 deploys, day 2's drifted batch
fails the gate, retries, alerts once and keeps prod, day 3 recovers; a second run the same day
is a no-op)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, synthetic_corpus, tiny_data, write_csv

COPY = ["conf", "stages", "src", "hydra_plugins", "dvc.yaml", ".dvc/config", ".dvcignore", "data/feedback"]
NAMES = np.array(["negative", "positive"])


def sh(args, cwd):
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def rows(n: int, seed: int, start: int, invert: bool = False) -> list[dict]:
    texts, y = synthetic_corpus(n, seed=seed)
    labels = 1 - y if invert else y
    return [{"id": f"r{start + i}", "text": t, "label": NAMES[l]} for i, (t, l) in enumerate(zip(texts, labels))]


def make_repo(root: Path, corpus_rows: list[dict]) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (repo / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, repo / item)
    (repo / "data").mkdir(exist_ok=True)
    write_csv(repo / "data/corpus.csv", corpus_rows)
    (repo / "conf/data/daily.yaml").write_text(yaml.safe_dump(tiny_data("data/corpus.csv", gold=False)))
    (repo / ".gitignore").write_text(
        "/data/*.sqlite\n/data/it*/\n/data/final/\n/data/rejects.csv\n/models/\n/.sentiloop/\n/data/incoming/\n"
    )
    sh(["git", "init", "-q"], repo)
    sh(["git", "config", "user.email", "t@t"], repo)
    sh(["git", "config", "user.name", "t"], repo)
    return repo


def test_incoming_files_that_fail_ingest_are_quarantined_with_a_reason(tmp_path):
    from sentiloop.daily import ingest_batch
    from sentiloop.settings import compose_settings

    repo = make_repo(tmp_path, rows(20, seed=1, start=0))
    s = compose_settings().merged({"data": yaml.safe_load((repo / "conf/data/daily.yaml").read_text())})
    inbox = repo / "data/incoming"
    inbox.mkdir(parents=True)
    write_csv(inbox / "a.csv", rows(5, seed=2, start=100))
    (inbox / "b.csv").write_text("id,words\n1,no text or label column\n")
    (inbox / "c.weird").write_text("what is this")
    import pandas as pd

    pd.DataFrame(rows(3, seed=3, start=200)).to_parquet(inbox / "d.parquet")
    out = ingest_batch(repo, s, "2026-01-01")
    assert [f["file"] for f in out["files"]] == ["a.csv", "d.parquet"] and out["rows"] == 8
    assert sorted(r["file"] for r in out["rejected_files"]) == ["b.csv", "c.weird"]
    assert (inbox / "rejected/b.csv").exists()
    reason = (inbox / "rejected/b.csv.reason.txt").read_text()
    assert reason.startswith("2026-01-01: ") and len(reason.strip().splitlines()) == 1 and "text" in reason
    assert "format" in (inbox / "rejected/c.weird.reason.txt").read_text()
    assert sorted(p.name for p in (inbox / "done/2026-01-01").iterdir()) == ["a.csv", "d.parquet"]
    corpus = pd.read_csv(repo / "data/corpus.csv")
    assert len(corpus) == 28 and list(corpus["id"][-3:]) == ["r200", "r201", "r202"]
    assert out["labels"][:5] == [r["label"] for r in rows(5, seed=2, start=100)]


class _Hook:
    def __init__(self):
        received = self.received = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_three_simulated_days(tmp_path, monkeypatch):
    from sentiloop import registry
    from sentiloop.daily import run_daily

    repo = make_repo(tmp_path, rows(400, seed=1, start=0))
    sh([sys.executable, "-m", "dvc", "remote", "modify", "local", "url", tmp_path / "remote"], repo)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("DVCLIVE_TEST", raising=False)
    sh(
        [
            sys.executable,
            "-m",
            "sentiloop.config",
            "data=daily",
            "loop.max_iterations=1",
            "ensemble.members=[lexicon]",
            "models.lexicon.seed_lexicon=none",
            "gate.f1_threshold=0.8",
            "gate.max_attempts=2",
        ],
        repo,
    )
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "init"], repo)
    inbox = repo / "data/incoming"
    inbox.mkdir(parents=True)
    hook = _Hook()
    monkeypatch.setenv("SENTILOOP_ALERT_WEBHOOK", hook.url)
    log: list[str] = []
    try:
        # day 1: no prod yet -> dvc repro -> the gate passes -> committed, registered, prod
        write_csv(inbox / "day1.csv", rows(100, seed=2, start=1000))
        assert run_daily(repo, "2026-03-01", log=log.append) == 0
        d1 = json.loads((repo / "metrics/daily/2026-03-01.json").read_text())
        assert d1["status"] == "passed" and d1["phases"]["retrained"]["gate_passed"]
        assert d1["phases"]["promoted"]["version"] == "v0.0.1"
        assert registry.stage_version(repo, "prod") == "v0.0.1"
        assert hook.received == []
        assert any((tmp_path / "remote").rglob("*.dir"))  # pushed to the DVC remote
        # the same day again: a no-op that says so
        log.clear()
        assert run_daily(repo, "2026-03-01", log=log.append) == 0
        assert log == [f"daily 2026-03-01: already ran (passed: {d1['message']}); nothing to do"]
        head = sh(["git", "rev-parse", "HEAD"], repo)

        # day 2: a drifted batch (every label inverted) -> prod below the bar on it -> retrain ->
        # the gate fails after its retries -> one alert, exit 1, prod stays, the batch is set aside
        write_csv(inbox / "day2.csv", rows(700, seed=3, start=2000, invert=True))
        from sentiloop.daily import _dvc_repro

        def interrupted(r):  # the machine goes down right after `dvc repro` finished
            _dvc_repro(r)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_daily(repo, "2026-03-02", log=log.append, repro=interrupted)
        assert hook.received == []
        log.clear()
        assert run_daily(repo, "2026-03-02", log=log.append) == 1  # resumes: repro is up to date
        assert log[0] == "daily 2026-03-02: resuming after ingested, evaluated"
        d2 = json.loads((repo / "metrics/daily/2026-03-02.json").read_text())
        assert d2["status"] == "failed" and d2["phases"]["evaluated"]["batch_f1"] < 0.8
        rt = d2["phases"]["retrained"]
        assert rt["attempts"] == 2 and not rt["gate_passed"] and rt["f1"] < 0.8
        assert registry.stage_version(repo, "prod") == "v0.0.1"
        assert len(hook.received) == 1 and hook.received[0]["alert_type"] == "DAILY_JOB_FAILURE"
        assert hook.received[0]["date"] == "2026-03-02"
        assert (inbox / "failed/2026-03-02/day2.csv").exists()
        assert sh(["git", "show", "HEAD:data/corpus.csv"], repo) == sh(
            ["git", "show", f"{head.strip()}:data/corpus.csv"], repo
        )
        assert (repo / "data/corpus.csv").read_text() == sh(["git", "show", "HEAD:data/corpus.csv"], repo)
        assert "DAILY_JOB_FAILURE" in sh(["git", "show", "HEAD:metrics/alerts.jsonl"], repo)
        assert run_daily(repo, "2026-03-02", log=log.append) == 1  # no second alert, no promotion
        assert len(hook.received) == 1

        # day 3: a clean batch -> prod clears the bar on it and on the test split -> passes
        write_csv(inbox / "day3.csv", rows(100, seed=4, start=3000))
        assert run_daily(repo, "2026-03-03", log=log.append) == 0
        d3 = json.loads((repo / "metrics/daily/2026-03-03.json").read_text())
        assert d3["status"] == "passed" and d3["phases"]["evaluated"]["batch_f1"] >= 0.8
        assert registry.stage_version(repo, "prod") == "v0.0.1" and len(hook.received) == 1
        report = (repo / "metrics/daily/2026-03-03.md").read_text()
        assert report.startswith("# Daily run 2026-03-03: PASSED") and "`prod` = v0.0.1" in report
        assert "r3099" in (repo / "data/corpus.csv").read_text()
    finally:
        hook.close()
