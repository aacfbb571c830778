"""A simulated annotator for benchmarks whose corpus has gold labels.

It answers from the gold label (table `gold`(id, gold_label) in a separate SQLite file that the
loop itself never reads) with probability `accuracy` and otherwise with a uniformly chosen other
class. The draw depends only on (seed, sentence id), so an answer does not change with the queue's
order, batch size or iteration: the same row asked twice gets the same answer, as from a cached
LLM. Its confidence is `accuracy` for every answer: a perfectly calibrated annotator that cannot
tell its right answers from its wrong ones, which is the honest assumption without a real model.
It goes through the same prompt/parse/validate path as the HTTP providers (it returns JSON text)
and every output row is marked simulated. It costs no tokens; its answers are cached per
sentence id (not per text), so a row asked again in a later iteration is free, as with an LLM.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import ProviderError, Reply
from .config import ConfigError, LLMConfig


def simulated_draw(seed: int, sentence_id: str, gold: str, classes: Sequence[str], accuracy: float) -> str:
    digest = hashlib.sha256(f"{seed}:{sentence_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    if rng.random() < accuracy or len(classes) < 2:
        return gold
    others = [c for c in classes if c != gold]
    return others[int(rng.integers(len(others)))]


class SimulatedProvider:
    name = "simulated"
    simulated = True
    sdk_retries = False

    def __init__(self, cfg: LLMConfig, gold_path: str | Path | None):
        if gold_path is None or not Path(gold_path).exists():
            raise ConfigError(
                f"llm.provider=simulated needs the gold labels database (table gold(id, gold_label)); got {gold_path!r}"
            )
        self.model = f"simulated-acc{cfg.simulated.accuracy:g}-seed{cfg.simulated.seed}"
        self._cfg = cfg
        self._con = sqlite3.connect(f"file:{Path(gold_path)}?mode=ro", uri=True)

    def _gold(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._con.execute(
            f"SELECT id, gold_label FROM gold WHERE id IN ({marks})", [str(i) for i in ids]
        ).fetchall()
        return {str(i): str(g) for i, g in rows}

    def complete(
        self,
        system: str,
        user: str,
        *,
        schema: dict,
        max_output_tokens=None,
        context: Sequence[tuple[str, str]] | None = None,
    ) -> Reply:
        """context: (request id, sentence id) of every item in `user`."""
        if not context:
            raise ProviderError("other", "simulated provider needs the sentence ids (context)")
        classes = schema["items"]["properties"]["label"]["enum"]
        gold = self._gold([sid for _, sid in context])
        acc = self._cfg.simulated.accuracy
        out = []
        for rid, sid in context:
            g = gold.get(str(sid))
            if g is None:
                continue  # no gold for this id: left unanswered -> counted as missing
            label = simulated_draw(self._cfg.simulated.seed, str(sid), g, classes, acc)
            out.append(
                {"id": rid, "label": label, "confidence": acc, "rationale": f"simulated annotator (accuracy {acc:g})"}
            )
        return Reply(text=json.dumps(out), prompt_tokens=0, output_tokens=0, http_attempts=0)

    def close(self) -> None:
        self._con.close()
