"""Persistent cache of LLM answers, so a repeated `dvc repro` / `dvc exp run` never pays twice.

Keyed by sha256 of (provider, model, prompt version, class list, text): the class list is part of
the prompt (the label enum), so a different class set is a different question. One SQLite file
under `cache_dir` (default .cache/llm/, outside every DVC output and gitignored): experiments in
temp copies can share it by pointing llm.cache.dir at one absolute path. Only validated answers
are stored, with the tokens they cost and the loop iteration that first paid for them: a hit
from an earlier iteration is free (the loop re-queues rows the LLM already answered), a hit from
this same iteration is charged against the budget exactly as the original call was, so a re-run of
an iteration admits the same rows and pays nothing. A damaged cache file is never
fatal: it is moved aside and the run goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

from .prompt import Answer

log = logging.getLogger("sentiloop.relabel")

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
  key TEXT PRIMARY KEY,
  provider TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
  label TEXT NOT NULL, confidence REAL NOT NULL, rationale TEXT,
  prompt_tokens REAL NOT NULL DEFAULT 0, output_tokens REAL NOT NULL DEFAULT 0,
  created_at REAL NOT NULL, iteration INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
  key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
  body TEXT NOT NULL, prompt_tokens REAL NOT NULL DEFAULT 0, output_tokens REAL NOT NULL DEFAULT 0,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
  run_key TEXT NOT NULL, iteration INTEGER NOT NULL, requests INTEGER NOT NULL,
  prompt_tokens REAL NOT NULL, output_tokens REAL NOT NULL, cost_usd REAL NOT NULL,
  done INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS spend_run ON spend (run_key, done);
"""


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _running_elsewhere(owner: str) -> bool:
    """True when `owner` is another live process on this machine (a concurrent run of the same
    queue, e.g. two queued experiments): its open spend is its own to report, not a killed run's."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def cache_key(provider: str, model: str, prompt_version: str, classes: Sequence[str], text: str) -> str:
    blob = json.dumps([provider, model, prompt_version, list(classes), text], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    FILENAME = "responses.sqlite"

    def __init__(self, cache_dir: str | Path, *, enabled: bool = True):
        self.path = Path(cache_dir) / self.FILENAME
        self.enabled = enabled
        self._con: sqlite3.Connection | None = None
        if enabled:
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=30)
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            cols = {r[1] for r in con.execute("PRAGMA table_info(answers)")}
            if "iteration" not in cols:  # a cache written before answers knew their iteration
                con.execute("ALTER TABLE answers ADD COLUMN iteration INTEGER NOT NULL DEFAULT 0")
            self._con = con
        except sqlite3.DatabaseError as e:
            aside = self.path.with_suffix(f".corrupt-{int(time.time())}")
            log.warning("LLM cache %s unreadable (%s): moved to %s, starting a new one", self.path, e, aside.name)
            try:
                self.path.rename(aside)
                con = sqlite3.connect(self.path, timeout=30)
                con.executescript(SCHEMA)
                self._con = con
            except (OSError, sqlite3.DatabaseError) as e2:  # pragma: no cover
                log.warning("LLM cache disabled: %s", e2)
                self.enabled = False

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[Answer, float, float, int]]:
        """key -> (answer, prompt_tokens, output_tokens, first iteration) for the keys present."""
        if not self.enabled or self._con is None:
            return {}
        keys = list(dict.fromkeys(keys))
        out = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = self._con.execute(
                f"SELECT key, label, confidence, rationale, prompt_tokens, output_tokens, iteration "
                f"FROM answers WHERE key IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
            for k, label, conf, rat, pt, ot, it in rows:
                out[k] = (
                    Answer(label=label, confidence=float(conf), rationale=rat or ""),
                    float(pt),
                    float(ot),
                    int(it),
                )
        return out

    def put_many(self, rows: Sequence[tuple[str, str, str, str, Answer, float, float]], *, iteration: int = 0) -> None:
        """rows: (key, provider, model, prompt_version, answer, prompt_tokens, output_tokens).
        An answer already stored keeps its first iteration (INSERT OR IGNORE)."""
        if not self.enabled or self._con is None or not rows:
            return
        now = time.time()
        with self._con:
            self._con.executemany(
                "INSERT OR IGNORE INTO answers (key, provider, model, prompt_version, label, "
                "confidence, rationale, prompt_tokens, output_tokens, created_at, iteration) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (k, p, m, v, a.label, a.confidence, a.rationale, pt, ot, now, int(iteration))
                    for k, p, m, v, a, pt, ot in rows
                ],
            )

    def record_spend(
        self, run_key: str, iteration: int, requests: int, prompt_tokens: float, output_tokens: float, cost_usd: float
    ) -> None:
        """One paid request (or its retries), committed at once: a kill -9 after it keeps it."""
        if not self.enabled or self._con is None:
            return
        with self._con:
            self._con.execute(
                "INSERT INTO spend (run_key, iteration, requests, prompt_tokens, "
                "output_tokens, cost_usd, done, created_at, owner) "
                "VALUES (?,?,?,?,?,?,0,?,?)",
                (
                    run_key,
                    int(iteration),
                    int(requests),
                    float(prompt_tokens),
                    float(output_tokens),
                    float(cost_usd),
                    time.time(),
                    _owner(),
                ),
            )

    def open_spend(self, run_key: str) -> tuple[int, float, float, float, list[str]]:
        """(requests, prompt tokens, output tokens, cost, owners) paid by runs of this queue that
        never finished and are not running now (killed); owners: to close with close_spend."""
        if not self.enabled or self._con is None:
            return 0, 0.0, 0.0, 0.0, []
        rows = self._con.execute(
            "SELECT owner, SUM(requests), SUM(prompt_tokens), SUM(output_tokens), "
            "SUM(cost_usd) FROM spend WHERE run_key = ? AND done = 0 GROUP BY owner",
            (run_key,),
        ).fetchall()
        rows = [r for r in rows if not _running_elsewhere(r[0])]
        return (
            sum(int(r[1]) for r in rows),
            sum(float(r[2]) for r in rows),
            sum(float(r[3]) for r in rows),
            sum(float(r[4]) for r in rows),
            [r[0] for r in rows],
        )

    def close_spend(self, run_key: str, owners: Sequence[str] = ()) -> None:
        """This run of the queue finished: its own spend and that of the killed runs it reported
        (`owners`) is closed, never carried again."""
        if not self.enabled or self._con is None:
            return
        owners = list(dict.fromkeys([_owner(), *owners]))
        with self._con:
            self._con.execute(
                f"UPDATE spend SET done = 1 WHERE run_key = ? AND done = 0 AND owner IN "
                f"({','.join('?' * len(owners))})",
                (run_key, *owners),
            )

    def get_document(self, key: str) -> tuple[str, float, float] | None:
        if not self.enabled or self._con is None:
            return None
        row = self._con.execute(
            "SELECT body, prompt_tokens, output_tokens FROM documents WHERE key = ?", (key,)
        ).fetchone()
        return (row[0], float(row[1]), float(row[2])) if row else None

    def put_document(
        self, key: str, provider: str, model: str, kind: str, body: str, prompt_tokens: float, output_tokens: float
    ) -> None:
        if not self.enabled or self._con is None:
            return
        with self._con:
            self._con.execute(
                "INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,?)",
                (key, provider, model, kind, body, prompt_tokens, output_tokens, time.time()),
            )

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
