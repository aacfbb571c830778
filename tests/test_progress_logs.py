"""Progress bars (a terminal only), the stages' logging, and TensorFlow's start-up noise."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from neural_corpus import CLASSES, make_tiny_bert, split, tiny_corpus
from sentiloop.models.base import build_model
from sentiloop.progress import PROGRESS_ENV, bar
from sentiloop.relabel import answer_queue
from sentiloop.settings import llm_config, member_config


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_shows_on_a_terminal_only(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        with bar(desc="predict it0 models", total=3, unit="row", file=stream, mininterval=0) as b:
            b.update(3)
    assert "predict it0 models" in tty.getvalue() and "3/3" in tty.getvalue()
    assert pipe.getvalue() == ""


@pytest.mark.parametrize("value, shown", [("0", False), ("off", False), ("1", True), ("yes", True)])
def test_sentiloop_progress_forces_bars_off_or_on(monkeypatch, value, shown):
    monkeypatch.setenv(PROGRESS_ENV, value)
    for stream in (Terminal(), io.StringIO()):
        with bar(desc="encode", total=2, file=stream, mininterval=0) as b:
            b.update(2)
        assert ("encode" in stream.getvalue()) is shown


def test_training_epochs_show_a_bar_with_the_losses(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    monkeypatch.setattr("sentiloop.progress.MININTERVAL", 0)
    (tx, ty), (dx, dy) = split()
    tx, ty, dev = tx[:60], ty[:60], (dx[:20], dy[:20])
    cfg = member_config(
        "bilstm",
        threads=1,
        epochs=2,
        batch_size=32,
        embedding_dim=8,
        hidden_size=8,
        dense_size=8,
        min_count=1,
        max_len=12,
        patience=5,
    )
    build_model("bilstm", CLASSES, cfg, seed=1).fit(tx, ty, eval_set=dev)
    err = capsys.readouterr().err
    assert "train bilstm" in err and "2/2" in err and "dev_loss=" in err


def test_encoding_and_head_epochs_show_bars(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    monkeypatch.setattr("sentiloop.progress.MININTERVAL", 0)
    (tx, ty), dev = split()
    words = {w for t in tiny_corpus(600)[0] for w in t.split()}
    cfg = member_config(
        "bert",
        pretrained=make_tiny_bert(tmp_path / "bert", words),
        device="cpu",
        threads=1,
        strategy="head",
        max_length=16,
        feature_cache=None,
        head_epochs=3,
        head_patience=10,
    )
    build_model("bert", CLASSES, cfg, seed=0).fit(tx, ty, eval_set=dev)
    err = capsys.readouterr().err
    assert "encode:" in err and f"/{len(set(tx))} [" in err and f"/{len(set(dev[0]))} [" in err
    assert "train bert head" in err and "3/3" in err


def test_llm_batches_show_a_bar(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    monkeypatch.setattr("sentiloop.progress.MININTERVAL", 0)
    import sqlite3

    con = sqlite3.connect(tmp_path / "gold.sqlite")
    con.execute("CREATE TABLE gold (id TEXT PRIMARY KEY, gold_label TEXT)")
    con.executemany("INSERT INTO gold VALUES (?, ?)", [(f"r{i}", CLASSES[i % 3]) for i in range(30)])
    con.commit()
    con.close()
    q = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(30)],
            "text": [f"text {i}" for i in range(30)],
            "priority": np.linspace(1, 0, 30),
        }
    )
    cfg = llm_config(
        "simulated",
        batch_size=10,
        simulated={"accuracy": 1.0, "seed": 7},
        budget={"max_rows": None, "max_tokens": None, "max_cost_usd": None},
    )
    answers, _ = answer_queue(
        q, cfg, CLASSES, iteration=2, cache_dir=tmp_path / "cache", gold_path=tmp_path / "gold.sqlite"
    )
    assert (answers["status"] == "answered").all()
    err = capsys.readouterr().err
    assert "relabel it2 simulated" in err and "30/30" in err


# --- the stages' logging --------------------------------------------------------------------------
def _stage_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run `code` the way a stage script starts (stages/ on sys.path, _common imported)."""
    full = {k: v for k, v in os.environ.items() if k not in ("SENTILOOP_LOG_LEVEL", "SENTILOOP_DEBUG")}
    full.update(env)
    prelude = f"import sys; sys.path.insert(0, {str(ROOT / 'stages')!r}); import _common, logging\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=full, cwd=ROOT)


LOG_LINES = (
    "_common.configure_logging()\n"
    "logging.getLogger('sentiloop.relabel').info('relabel it1: 12 rows')\n"
    "logging.getLogger('sentiloop.relabel').debug('a detail')\n"
    "logging.getLogger('httpx').info('HTTP Request: POST')\n"
    "logging.getLogger('httpx').warning('a library warning')\n"
)


def test_stages_log_sentiloop_info_to_stderr_and_libraries_at_warning():
    r = _stage_python(LOG_LINES)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["INFO sentiloop.relabel: relabel it1: 12 rows", "WARNING httpx: a library warning"]
    assert r.stdout == ""


@pytest.mark.parametrize(
    "level, lines",
    [
        ("warning", ["WARNING httpx: a library warning"]),
        (
            "DEBUG",
            [
                "INFO sentiloop.relabel: relabel it1: 12 rows",
                "DEBUG sentiloop.relabel: a detail",
                "INFO httpx: HTTP Request: POST",
                "WARNING httpx: a library warning",
            ],
        ),
        ("ERROR", []),
    ],
)
def test_sentiloop_log_level_sets_the_level(level, lines):
    r = _stage_python(LOG_LINES, SENTILOOP_LOG_LEVEL=level)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == lines


def test_an_unknown_log_level_stops_a_stage_in_one_line():
    r = subprocess.run(
        [sys.executable, "stages/ingest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "SENTILOOP_DEBUG"}, "SENTILOOP_LOG_LEVEL": "loud"},
    )
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "stage ingest: error: $SENTILOOP_LOG_LEVEL = 'LOUD': must be one of DEBUG, INFO, WARNING, ERROR"
    ]


# --- TensorFlow's start-up noise ------------------------------------------------------------------
def test_tensorflow_start_up_noise_is_dropped_and_other_lines_kept(capfd):
    from sentiloop.models.lstm import TF_STARTUP_NOISE, _stderr_without

    with _stderr_without(TF_STARTUP_NOISE):
        os.write(
            2,
            b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...\n"
            b"E0000 something real went wrong\n",
        )
    err = capfd.readouterr().err
    assert err == "E0000 something real went wrong\n"


@pytest.mark.slow  # a fresh process imports TensorFlow (~10-60 s on 2 shared cores); run by .ci/run
def test_training_the_lstm_member_shows_its_epochs_and_no_tensorflow_noise():
    """A fresh process (TensorFlow not loaded yet) trains the Keras member: stderr holds the epoch
    bar (forced on: stderr is a pipe here) and nothing else, none of TensorFlow's start-up lines."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), **{PROGRESS_ENV: "1"})
    code = (
        "import sentiloop.progress\n"
        "sentiloop.progress.MININTERVAL = 0\n"
        "from neural_corpus import CLASSES, split\n"
        "from sentiloop.models.base import build_model\n"
        "from sentiloop.settings import member_config\n"
        "(tx, ty), (dx, dy) = split()\n"
        "cfg = member_config('lstm', threads=1, epochs=2, embedding_dim=8, units=8, min_count=1, max_len=12)\n"
        "m = build_model('lstm', CLASSES, cfg, seed=1).fit(tx[:40], ty[:40], eval_set=(dx[:10], dy[:10]))\n"
        "print(m.predict_proba(dx[:3]).shape)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "(3, 3)\n"
    drawn = [part.strip() for part in re.split(r"[\r\n]", r.stderr) if part.strip()]
    assert drawn and all(part.startswith("train lstm:") for part in drawn), r.stderr
    assert any("2/2" in part and "dev_loss=" in part for part in drawn)
