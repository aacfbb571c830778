"""Applying one iteration's decisions to the store, in order of authority.

A human label (locked = 1) is never changed by anything automatic; an annotator's (LLM's) answer
that clears `llm.min_confidence` settles its row (locked = 2: no longer judged by the ensemble,
still open to a human); every other free train row
takes the correction rule's verdict (steps/judge.py: flip, hold, revert, or set aside). The test
split is never touched (`assert_test_unchanged`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentiloop.errors import SentiloopError

CHANGE_COLUMNS = ["id", "old_label", "new_label", "source", "confidence", "detail", "action"]


class CorrectionError(SentiloopError, RuntimeError):
    pass


@dataclass
class Decision:
    changes: pd.DataFrame  # CHANGE_COLUMNS: label changes (old != new)
    aside: pd.DataFrame  # id, aside (0/1), p_wrong: every judged row's new state
    aside_moves: pd.DataFrame  # CHANGE_COLUMNS: rows set aside or brought back (label unchanged)
    settled: list  # ids an annotator's answer settled (locked = 2 from now on)


def usable_answers(llm_answers: pd.DataFrame | None, classes: list[str], min_confidence: float) -> pd.DataFrame | None:
    """LLM answers that may be applied: valid status and label, confidence at or above the bar."""
    if llm_answers is None or not len(llm_answers) or "status" not in llm_answers:
        return None
    return llm_answers[
        llm_answers["status"].isin(["answered", "cached"])
        & llm_answers["llm_label"].isin(classes)
        & (llm_answers["llm_confidence"] >= min_confidence)
    ]


def decide(
    judged: pd.DataFrame,
    current_aside: pd.Series,
    classes: list[str],
    *,
    llm_answers: pd.DataFrame | None = None,
    llm_min_confidence: float = 1.01,
    human_locked: set | None = None,
) -> Decision:
    """This iteration's changes.

    judged: judgement.parquet (id, current, label, aside, p_wrong, strength, action, ...), the
    free train rows. current_aside: id -> aside flag before this iteration. human_locked: ids
    locked by feedback in this iteration (skipped: the human label already stands)."""
    human_locked = set(human_locked or ())
    rows = judged[~judged["id"].isin(human_locked)].copy()
    unknown = set(rows["label"]) - set(classes)
    if unknown:
        raise CorrectionError(f"judged labels {sorted(unknown)} are not in classes {classes}")
    rows["source"] = "ensemble"
    rows["detail"] = [f"P={a:.3f} P(original wrong)={b:.3f}" for a, b in zip(rows["strength"], rows["p_wrong"])]
    rows["confidence"] = rows["strength"].astype(float)
    ok = usable_answers(llm_answers, classes, llm_min_confidence)
    settled: list = []
    if ok is not None and len(ok):
        ans = ok.drop_duplicates("id").set_index("id")
        hit = rows["id"].isin(ans.index).to_numpy()
        if hit.any():
            a = ans.loc[rows.loc[hit, "id"]]
            rows.loc[hit, "label"] = a["llm_label"].to_numpy()
            rows.loc[hit, "aside"] = 0
            rows.loc[hit, "source"] = "llm"
            rows.loc[hit, "confidence"] = a["llm_confidence"].astype(float).to_numpy()
            rows.loc[hit, "detail"] = (
                a.get("model", pd.Series("", index=a.index)).astype(str)
                + ": "
                + a.get("rationale", pd.Series("", index=a.index)).astype(str)
            ).to_numpy()
            settled = rows.loc[hit, "id"].astype(str).tolist()
    changed = rows["label"] != rows["current"]
    ch = rows[changed]
    restore = (ch["label"] == ch["original"]) & (ch["source"] == "ensemble")
    changes = pd.DataFrame(
        {
            "id": ch["id"],
            "old_label": ch["current"],
            "new_label": ch["label"],
            "source": ch["source"],
            "confidence": ch["confidence"],
            "detail": ch["detail"],
            "action": np.where(restore, "restore", "relabel"),
        }
    )
    before = rows["id"].map(current_aside).fillna(0).astype(int).to_numpy()
    after = rows["aside"].astype(int).to_numpy()
    moved = rows[(before != after) & ~changed.to_numpy()]
    moves = pd.DataFrame(
        {
            "id": moved["id"],
            "old_label": moved["label"],
            "new_label": moved["label"],
            "source": moved["source"],
            "confidence": moved["p_wrong"].astype(float),
            "detail": moved["detail"],
            "action": np.where(moved["aside"].astype(int) == 1, "aside", "unaside"),
        }
    )
    state = rows[["id", "aside", "p_wrong"]].reset_index(drop=True)
    return Decision(
        changes.reset_index(drop=True)[CHANGE_COLUMNS], state, moves.reset_index(drop=True)[CHANGE_COLUMNS], settled
    )


def assert_test_unchanged(store_path, chunk_size: int = 5000) -> None:
    """The held-out test split must keep its original labels in every iteration."""
    from sentiloop import store

    for chunk in store.iter_chunks(
        store_path, ["id", "label", "current_label"], where="split = 'test'", chunk_size=chunk_size
    ):
        bad = chunk[chunk["label"] != chunk["current_label"]]
        if len(bad):
            raise CorrectionError(
                f"{store_path}: {len(bad)} test rows changed label (e.g. id {bad['id'].iloc[0]}); "
                "the held-out test split must never be corrected"
            )
